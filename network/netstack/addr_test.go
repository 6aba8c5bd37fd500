package netstack

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/unroot/unroot/network"
)

func TestMakePlan(t *testing.T) {
	tests := []struct {
		name    string
		cidr    string
		mtu     int
		ifName  string
		ipv6    bool
		want    plan
		wantErr string
	}{
		{name: "defaults", want: plan{ifName: "tap0", mtu: 65520,
			addr: netip.MustParsePrefix("10.0.2.100/24"), gateway: netip.MustParseAddr("10.0.2.1"), dns: netip.MustParseAddr("10.0.2.3")}},
		{name: "custom cidr", cidr: "192.168.7.0/24", mtu: 1500, ifName: "eth0", want: plan{ifName: "eth0", mtu: 1500,
			addr: netip.MustParsePrefix("192.168.7.100/24"), gateway: netip.MustParseAddr("192.168.7.1"), dns: netip.MustParseAddr("192.168.7.3")}},
		{name: "wide cidr", cidr: "10.10.0.0/16", want: plan{ifName: "tap0", mtu: 65520,
			addr: netip.MustParsePrefix("10.10.0.100/16"), gateway: netip.MustParseAddr("10.10.0.1"), dns: netip.MustParseAddr("10.10.0.3")}},
		{name: "ipv6", ipv6: true, want: plan{ifName: "tap0", mtu: 65520,
			addr: netip.MustParsePrefix("10.0.2.100/24"), gateway: netip.MustParseAddr("10.0.2.1"), dns: netip.MustParseAddr("10.0.2.3"),
			addr6: netip.MustParsePrefix("fd00:756e:726f:6f74::100/64"), gateway6: netip.MustParseAddr("fd00:756e:726f:6f74::1")}},
		{name: "not network address", cidr: "10.0.2.5/24", wantErr: "cidr must be like 10.0.2.0/24, not like 10.0.2.5/24"},
		{name: "too narrow", cidr: "10.0.2.0/26", wantErr: "too small"},
		{name: "ipv6 only", cidr: "fd12:3456::/48", want: plan{ifName: "tap0", mtu: 65520,
			addr6: netip.MustParsePrefix("fd12:3456::100/48"), gateway6: netip.MustParseAddr("fd12:3456::1")}},
		{name: "ipv6 only, --ipv6 too", cidr: "fd12:3456::/64", ipv6: true, want: plan{ifName: "tap0", mtu: 65520,
			addr6: netip.MustParsePrefix("fd12:3456::100/64"), gateway6: netip.MustParseAddr("fd12:3456::1")}},
		{name: "ipv6 only, mtu too small", cidr: "fd12:3456::/64", mtu: 1000, wantErr: "too small for IPv6"},
		{name: "loopback cidr", cidr: "127.0.0.0/8", wantErr: "loopback addresses"},
		{name: "mtu too big", mtu: 65522, wantErr: "mtu must be <= 65521"},
		{name: "mtu too small for ipv6", mtu: 1000, ipv6: true, wantErr: "too small for IPv6"},
		{name: "bad ifname", ifName: "a/b", wantErr: "ifname"},
		{name: "long ifname", ifName: "abcdefghijklmnop", wantErr: "ifname"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var cidr netip.Prefix
			if tt.cidr != "" {
				cidr = netip.MustParsePrefix(tt.cidr)
			}
			got, err := makePlan(network.Config{CIDR: cidr, MTU: tt.mtu, IfName: tt.ifName, IPv6: tt.ipv6})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("makePlan error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("makePlan: %v", err)
			}
			if got != tt.want {
				t.Fatalf("makePlan = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestRoute(t *testing.T) {
	p, err := makePlan(network.Config{IPv6: true})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		dst     string
		disable bool
		want    string
		v       verdict
	}{
		{"10.0.2.1:80", false, "127.0.0.1:80", toLoopback},
		{"10.0.2.1:80", true, "10.0.2.1:80", refuse},
		{"10.0.2.1:53", true, "10.0.2.1:53", toDNS},
		{"10.0.2.1:53", false, "10.0.2.1:53", toDNS},
		{"[fd00:756e:726f:6f74::1]:8080", false, "[::1]:8080", toLoopback},
		{"[fd00:756e:726f:6f74::1]:8080", true, "[fd00:756e:726f:6f74::1]:8080", refuse},
		{"[fd00:756e:726f:6f74::1]:53", true, "[fd00:756e:726f:6f74::1]:53", toDNS},
		{"192.0.2.7:443", true, "192.0.2.7:443", toHost},
		{"[2001:db8::1]:443", false, "[2001:db8::1]:443", toHost},
		{"127.0.0.1:22", false, "127.0.0.1:22", refuse},
		{"[::1]:22", false, "[::1]:22", refuse},
		{"0.0.0.0:22", false, "0.0.0.0:22", refuse},
		{"224.0.0.251:5353", false, "224.0.0.251:5353", refuse},
		{"10.0.2.7:80", false, "10.0.2.7:80", refuse},
		// slirp4netns' DNS address answers DNS and nothing else.
		{"10.0.2.3:53", true, "10.0.2.3:53", toDNS},
		{"10.0.2.3:53", false, "10.0.2.3:53", toDNS},
		{"10.0.2.3:80", false, "10.0.2.3:80", refuse},
	}
	for _, tt := range tests {
		got, v := p.route(netip.MustParseAddrPort(tt.dst), tt.disable)
		if got.String() != tt.want || v != tt.v {
			t.Errorf("route(%s, disable=%v) = %s, %d; want %s, %d", tt.dst, tt.disable, got, v, tt.want, tt.v)
		}
	}
}

func TestParseNameservers(t *testing.T) {
	tests := []struct {
		name, in string
		want     []string
	}{
		{"empty", "", nil},
		{"systemd-resolved", "# comment\nnameserver 127.0.0.53\noptions edns0 trust-ad\nsearch example.com\n", []string{"127.0.0.53:53"}},
		{"several and v6", "nameserver 10.0.0.1\nnameserver   2001:db8::53 \nnameserver 10.0.0.2 # trailing\n", []string{"10.0.0.1:53", "[2001:db8::53]:53", "10.0.0.2:53"}},
		{"garbage skipped", "nameserver\nnameserver not-an-ip\nnameserverx 1.2.3.4\n;nameserver 9.9.9.9\nnameserver 1.1.1.1", []string{"1.1.1.1:53"}},
		{"zone kept", "nameserver fe80::1%eth0\n", []string{"[fe80::1%eth0]:53"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := parseNameservers([]byte(tt.in))
			if len(got) != len(tt.want) {
				t.Fatalf("parseNameservers = %v, want %v", got, tt.want)
			}
			for i := range got {
				if got[i].String() != tt.want[i] {
					t.Fatalf("parseNameservers = %v, want %v", got, tt.want)
				}
			}
		})
	}
}

func FuzzParseNameservers(f *testing.F) {
	f.Add([]byte("nameserver 127.0.0.53\noptions edns0\n"))
	f.Add([]byte("nameserver fe80::1%eth0\nnameserver 1.1.1.1 # x\n"))
	f.Add([]byte("\x00nameserver\t\t::1;\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, ns := range parseNameservers(data) {
			if !ns.IsValid() || ns.Port() != 53 {
				t.Fatalf("parseNameservers returned %v", ns)
			}
		}
	})
}

func FuzzMakePlan(f *testing.F) {
	f.Add([]byte{10, 0, 2, 0}, 24, 0, "tap0", false)
	f.Add([]byte{192, 168, 0, 0}, 16, 1500, "eth0", true)
	f.Fuzz(func(t *testing.T, ip []byte, bits, mtu int, ifName string, ipv6 bool) {
		a, ok := netip.AddrFromSlice(ip)
		if !ok {
			return
		}
		p, err := makePlan(network.Config{CIDR: netip.PrefixFrom(a, bits), MTU: mtu, IfName: ifName, IPv6: ipv6})
		if err != nil {
			return
		}
		cidr := netip.PrefixFrom(a, bits)
		if !cidr.IsValid() {
			cidr = network.DefaultCIDR // what a zero --cidr means
		}
		addr, gw := p.addr.Addr(), p.gateway
		if cidr.Addr().Is6() {
			// An IPv6-only --cidr: the plan is in its IPv6 half.
			addr, gw = p.addr6.Addr(), p.gateway6
			if p.addr.IsValid() {
				t.Fatalf("plan %+v has IPv4 on an IPv6-only %s", p, cidr)
			}
		}
		if !cidr.Contains(addr) || !cidr.Contains(gw) || addr == gw {
			t.Fatalf("plan %+v escapes %s", p, cidr)
		}
	})
}
