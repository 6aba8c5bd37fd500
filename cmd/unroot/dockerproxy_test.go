package main

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestParseProxyArgs(t *testing.T) {
	tests := []struct {
		args    string
		want    proxyArgs
		wantErr string
	}{
		{"-proto tcp -host-ip 0.0.0.0 -host-port 8080 -container-ip 172.17.0.2 -container-port 80",
			proxyArgs{proto: "tcp", hostIP: netip.MustParseAddr("0.0.0.0"), hostPort: 8080, containerIP: "172.17.0.2", containerPort: 80}, ""},
		{"--proto=udp --host-ip=:: --host-port=53 --container-ip=172.17.0.2 --container-port=53 -use-listen-fd",
			proxyArgs{proto: "udp", hostIP: netip.MustParseAddr("::"), hostPort: 53, containerIP: "172.17.0.2", containerPort: 53, useListenFD: true}, ""},
		{"-host-port 8080 -container-ip 172.17.0.2 -container-port 80 -some-new-flag x",
			proxyArgs{proto: "tcp", hostPort: 8080, containerIP: "172.17.0.2", containerPort: 80}, ""},
		{"-host-port eighty", proxyArgs{}, "want a port number"},
		{"-host-port", proxyArgs{}, "needs an argument"},
		{"stray", proxyArgs{}, "takes only flags"},
	}
	for _, tt := range tests {
		got, err := parseProxyArgs(strings.Fields(tt.args))
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("parseProxyArgs(%q) error = %v, want %q", tt.args, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("parseProxyArgs(%q) = %+v, %v; want %+v", tt.args, got, err, tt.want)
		}
	}
}

func TestReplaceFlag(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"-host-ip 0.0.0.0 -host-port 1", "-host-ip 127.0.0.1 -host-port 1"},
		{"--host-ip=:: -host-port 1", "-host-ip 127.0.0.1 -host-port 1"},
		{"-host-port 1", "-host-port 1 -host-ip 127.0.0.1"},
		// The value of another flag is not the flag, whatever it reads.
		{"-0 host-ip", "-0 host-ip -host-ip 127.0.0.1"},
		{"-proto -host-ip -host-ip ::", "-proto -host-ip -host-ip 127.0.0.1"},
		{"-use-listen-fd -host-ip ::", "-use-listen-fd -host-ip 127.0.0.1"},
	} {
		if got := strings.Join(replaceFlag(strings.Fields(tt.in), "host-ip", "127.0.0.1"), " "); got != tt.want {
			t.Errorf("replaceFlag(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestCtlFlag(t *testing.T) {
	for _, tt := range []struct {
		arg, name, value string
		has, ok          bool
	}{
		{"--socket", "socket", "", false, true},
		{"-socket=/x", "socket", "/x", true, true},
		{"--socketx", "socket", "", false, false},
		{"socket", "socket", "", false, false},
		{"--json=false", "json", "false", true, true},
	} {
		v, has, ok := ctlFlag(tt.arg, tt.name)
		if v != tt.value || has != tt.has || ok != tt.ok {
			t.Errorf("ctlFlag(%q, %q) = %q, %v, %v", tt.arg, tt.name, v, has, ok)
		}
	}
}

func FuzzParseProxyArgs(f *testing.F) {
	f.Add("-proto tcp -host-ip 0.0.0.0 -host-port 8080 -container-ip 172.17.0.2 -container-port 80")
	f.Add("--host-port=1 -use-listen-fd=false")
	f.Fuzz(func(t *testing.T, s string) {
		args := strings.Split(s, " ")
		if _, err := parseProxyArgs(args); err != nil {
			return
		}
		out := replaceFlag(args, "host-ip", "::1")
		a, err := parseProxyArgs(out)
		if err != nil || a.hostIP != netip.IPv6Loopback() || !slices.Contains(out, "::1") {
			t.Fatalf("after replaceFlag(%q): %+v, %v", out, a, err)
		}
	})
}
