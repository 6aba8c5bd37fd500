package builtin

import (
	"context"
	"testing"

	"github.com/unroot/unroot/port"
)

type firewallSource struct {
	port.SocketSource
	firewall string
}

func (f *firewallSource) SetFirewall(name string) { f.firewall = name }

// Info reports the firewall as RootlessKit 3.3 does (API 1.1.3's extra),
// and the factory hands the choice to the socket source.
func TestInfoFirewall(t *testing.T) {
	for _, tt := range []struct {
		opts Options
		want string // "" = no extra
	}{
		{Options{SourceIPTransparent: true}, "iptables"},
		{Options{SourceIPTransparent: true, Firewall: "auto"}, "iptables"},
		{Options{SourceIPTransparent: true, Firewall: "nft"}, "nft"},
		{Options{}, ""},
	} {
		src := &firewallSource{}
		d, err := NewFactory(tt.opts)(context.Background(), port.Env{Sockets: src})
		if err != nil {
			t.Fatal(err)
		}
		info := d.Info()
		d.Close()
		if got := info.Extra["sourceIPTransparentBackend"]; got != tt.want {
			t.Errorf("%+v: extra = %v, want %q", tt.opts, info.Extra, tt.want)
		}
		if src.firewall != tt.opts.Firewall {
			t.Errorf("%+v: the socket source was told %q", tt.opts, src.firewall)
		}
	}
}
