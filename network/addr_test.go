package network

import (
	"net/netip"
	"strings"
	"testing"
)

func TestParseCIDR(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr string
	}{
		{in: "10.0.2.0/24", want: "10.0.2.0/24"},
		{in: " 10.41.0.0/16 ", want: "10.41.0.0/16"},
		{in: "192.168.128.0/25", want: "192.168.128.0/25"},
		{in: "10.0.2.100/24", wantErr: "cidr must be like 10.0.2.0/24, not like 10.0.2.100/24"},
		{in: "10.0.2.5/24", wantErr: "cidr must be like 10.0.2.0/24, not like 10.0.2.5/24"},
		{in: "10.0.2.0/26", wantErr: "too small"},
		{in: "10.0.2.0", wantErr: "not an address/length pair"},
		{in: "", wantErr: "empty"},
		// IPv6 alone: an IPv6-only namespace.
		{in: "fd00::/64", want: "fd00::/64"},
		{in: "fd12:3456:789a::/48", want: "fd12:3456:789a::/48"},
		{in: "2001:db8::/119", want: "2001:db8::/119"},
		{in: "2001:db8::/120", wantErr: "too small: the child gets host 2001:db8::100, so use a /119 or shorter prefix (like 2001:db8::/64)"},
		{in: "fd00::1/64", wantErr: "cidr must be like fd00::/64, not like fd00::1/64"},
		{in: "::ffff:10.0.2.0/120", wantErr: "IPv4-mapped"},
		{in: "::/0", wantErr: "unspecified"},
		{in: "::/64", wantErr: "unspecified"},
		{in: "::1/128", wantErr: "loopback"},
		{in: "ff02::/16", wantErr: "multicast"},
		{in: "8000::/1", wantErr: "multicast"},
		{in: "10.0.2.0/33", wantErr: "not an address/length pair"},
		// Networks no namespace may have (#19): each refused in one line.
		{in: "0.0.0.0/0", wantErr: "cidr 0.0.0.0/0 contains unspecified addresses (0.0.0.0/8): use a private network like 10.0.2.0/24"},
		{in: "0.0.0.0/8", wantErr: "unspecified"},
		{in: "127.0.0.0/8", wantErr: "loopback"},
		{in: "64.0.0.0/2", wantErr: "loopback"},
		{in: "224.0.0.0/4", wantErr: "multicast"},
		{in: "239.1.0.0/16", wantErr: "multicast"},
		{in: "128.0.0.0/1", wantErr: "multicast"},
		{in: "128.0.0.0/2", want: "128.0.0.0/2"},
	}
	for _, tt := range tests {
		got, err := ParseCIDR(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseCIDR(%q) error = %v, want one containing %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got.String() != tt.want {
			t.Errorf("ParseCIDR(%q) = %v, %v, want %s", tt.in, got, err, tt.want)
		}
	}
}

func TestAddresses(t *testing.T) {
	tests := []struct{ cidr, child, gw, dns string }{
		{"10.0.2.0/24", "10.0.2.100", "10.0.2.2", "10.0.2.3"},
		{"10.41.0.0/16", "10.41.0.100", "10.41.0.2", "10.41.0.3"},
		{"192.168.255.128/25", "192.168.255.228", "192.168.255.130", "192.168.255.131"},
		{"fd00:1::/64", "fd00:1::100", "fd00:1::2", "fd00:1::3"},
		{"2001:db8:0:ff00::/56", "2001:db8:0:ff00::100", "2001:db8:0:ff00::2", "2001:db8:0:ff00::3"},
	}
	for _, tt := range tests {
		c, g, d := Addresses(netip.MustParsePrefix(tt.cidr))
		if c.String() != tt.child || g.String() != tt.gw || d.String() != tt.dns {
			t.Errorf("Addresses(%s) = %s %s %s, want %s %s %s", tt.cidr, c, g, d, tt.child, tt.gw, tt.dns)
		}
	}
}

func TestValidateMTU(t *testing.T) {
	for _, ok := range []int{0, 68, 1500, 65520, 65521} {
		if err := ValidateMTU(ok); err != nil {
			t.Errorf("ValidateMTU(%d) = %v, want nil", ok, err)
		}
	}
	for mtu, want := range map[int]string{-1: "negative", 65522: "mtu must be <= 65521", 67: "too small", 1: "too small"} {
		if err := ValidateMTU(mtu); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ValidateMTU(%d) = %v, want error containing %q", mtu, err, want)
		}
	}
}

func TestValidateIfName(t *testing.T) {
	for _, ok := range []string{"tap0", "eth0", "a", "veth-unroot_1.x", "123456789012345"} {
		if err := ValidateIfName(ok); err != nil {
			t.Errorf("ValidateIfName(%q) = %v, want nil", ok, err)
		}
	}
	for name, want := range map[string]string{
		"":                 "empty",
		"tap/0":            "must not contain '/'",
		"1234567890123456": "longer than 15",
		"..":               "not a valid",
		"tap 0":            "contains",
		"tap:0":            "contains",
		"tap\n":            "contains",
	} {
		if err := ValidateIfName(name); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ValidateIfName(%q) = %v, want error containing %q", name, err, want)
		}
	}
}

func TestParseTriState(t *testing.T) {
	for in, want := range map[string]TriState{"": Off, "false": Off, "TRUE": On, "1": On, "auto": Auto} {
		got, err := ParseTriState("x", in)
		if err != nil || got != want {
			t.Errorf("ParseTriState(%q) = %v, %v, want %v", in, got, err, want)
		}
	}
	if _, err := ParseTriState("--slirp4netns-sandbox", "yes"); err == nil ||
		err.Error() != `--slirp4netns-sandbox must be true, false or auto, not "yes"` {
		t.Errorf("ParseTriState(yes) error = %v", err)
	}
}

func TestConfigWithDefaults(t *testing.T) {
	c, err := Config{}.WithDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if c.MTU != 65520 || c.CIDR.String() != "10.0.2.0/24" || c.IfName != "tap0" {
		t.Errorf("defaults = mtu %d cidr %s ifname %s, want 65520 10.0.2.0/24 tap0", c.MTU, c.CIDR, c.IfName)
	}
	bad := []Config{
		{MTU: 70000},
		{CIDR: netip.MustParsePrefix("10.0.2.100/24")},
		{IfName: "a/b"},
		{MTU: 1000, IPv6: true},
	}
	for _, b := range bad {
		if _, err := b.WithDefaults(); err == nil {
			t.Errorf("%+v.WithDefaults() = nil error, want one", b)
		}
	}
}

func FuzzParseCIDR(f *testing.F) {
	for _, s := range []string{"10.0.2.0/24", "10.0.2.100/24", "fd00::/64", "", "1.2.3.4/0", "255.255.255.128/25", "0.0.0.0/0", "127.0.0.0/8"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseCIDR(s)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error for %q spans lines: %q", s, err)
			}
			return
		}
		if p.Masked() != p || (p.Addr().Is4() && p.Bits() > 25) || p.Bits() > 119 || p.Addr().Is4In6() {
			t.Errorf("ParseCIDR(%q) accepted %s", s, p)
		}
		c, g, d := Addresses(p)
		for _, a := range []netip.Addr{c, g, d} {
			if !p.Contains(a) || a.IsLoopback() || a.IsMulticast() || a.IsUnspecified() {
				t.Errorf("Addresses(%s) gave %s, outside the network or unusable", p, a)
			}
		}
	})
}

func FuzzValidateIfName(f *testing.F) {
	for _, s := range []string{"tap0", "a/b", "", "..", "x\x00y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if ValidateIfName(s) == nil {
			if s == "" || len(s) > 15 || strings.ContainsAny(s, "/: \t\n\x00") {
				t.Errorf("ValidateIfName(%q) accepted it", s)
			}
		}
	})
}

func TestAddrAdd(t *testing.T) {
	for _, tt := range []struct {
		base string
		n    uint32
		want string
	}{
		{"10.0.2.0", 100, "10.0.2.100"},
		{"10.0.2.200", 100, "10.0.3.44"},
		{"fd00::", 1, "fd00::1"},
		{"fd00::ff", 1, "fd00::100"},
	} {
		if got := AddrAdd(netip.MustParseAddr(tt.base), tt.n); got.String() != tt.want {
			t.Errorf("AddrAdd(%s, %d) = %s, want %s", tt.base, tt.n, got, tt.want)
		}
	}
}
