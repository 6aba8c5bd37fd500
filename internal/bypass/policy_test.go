package bypass

import (
	"net/netip"
	"testing"
)

var (
	mp   = netip.MustParsePrefix
	ma   = netip.MustParseAddr
	map_ = netip.MustParseAddrPort
)

func TestMatchBind(t *testing.T) {
	pubs := []Published{
		{ID: 1, Transport: "tcp", ParentPort: 8080, ChildPort: 80},
		{ID: 2, Transport: "udp", ParentPort: 5353, ChildPort: 53},
		{ID: 3, Transport: "tcp", ParentPort: 9000, ChildPort: 90, ChildIP: ma("10.0.2.100")},
		{ID: 4, Transport: "tcp", ParentIP: ma("::"), ParentPort: 8080, ChildPort: 80},
	}
	self := []netip.Addr{ma("10.0.2.100")}
	for _, tc := range []struct {
		transport, addr string
		want            []int
	}{
		{"tcp", "0.0.0.0:80", []int{1, 4}},
		{"tcp", "[::]:80", []int{1, 4}},
		{"tcp", "127.0.0.1:80", []int{1, 4}},
		{"tcp", "10.0.2.100:80", []int{1, 4}},
		{"tcp", "[::ffff:127.0.0.1]:80", []int{1, 4}},
		{"tcp", "172.17.0.1:80", nil}, // a bridge inside
		{"udp", "0.0.0.0:80", nil},
		{"udp", "0.0.0.0:53", []int{2}},
		{"tcp", "0.0.0.0:0", nil},
		{"tcp", "10.0.2.100:90", []int{3}},
		{"tcp", "0.0.0.0:81", nil},
	} {
		got := matchBind(pubs, tc.transport, map_(tc.addr), self)
		var ids []int
		for _, p := range got {
			ids = append(ids, p.ID)
		}
		if len(ids) != len(tc.want) || (len(ids) > 0 && (ids[0] != tc.want[0] || ids[len(ids)-1] != tc.want[len(tc.want)-1])) {
			t.Errorf("%s %s: got %v, want %v", tc.transport, tc.addr, ids, tc.want)
		}
	}
}

func TestHostBindAddr(t *testing.T) {
	for _, tc := range []struct {
		family int
		v6only bool
		parent string
		want   string // "" = cannot
	}{
		{afInet, false, "", "0.0.0.0:8080"},
		{afInet, false, "0.0.0.0", "0.0.0.0:8080"},
		{afInet, false, "127.0.0.1", "127.0.0.1:8080"},
		{afInet, false, "::", "0.0.0.0:8080"},
		{afInet, false, "::1", ""},
		{afInet6, false, "", "[::]:8080"},
		{afInet6, true, "", "[::]:8080"},
		{afInet6, false, "::1", "[::1]:8080"},
		{afInet6, false, "127.0.0.1", "[::ffff:127.0.0.1]:8080"},
		{afInet6, false, "0.0.0.0", "[::ffff:0.0.0.0]:8080"},
		{afInet6, true, "127.0.0.1", ""},
	} {
		p := Published{ParentPort: 8080}
		if tc.parent != "" {
			p.ParentIP = ma(tc.parent)
		}
		got, ok := hostBindAddr(tc.family, tc.v6only, p)
		if (tc.want == "") == ok || ok && got.String() != tc.want {
			t.Errorf("family %d v6only %v parent %q: got %v %v, want %q", tc.family, tc.v6only, tc.parent, got, ok, tc.want)
		}
	}
}

func TestReachBound(t *testing.T) {
	for _, tc := range []struct {
		family int
		bound  string
		v6only bool
		want   string
	}{
		{afInet, "0.0.0.0:8080", false, "127.0.0.1:8080"},
		{afInet, "[::]:8080", false, "127.0.0.1:8080"},
		{afInet, "[::]:8080", true, ""},
		{afInet, "[::ffff:0.0.0.0]:8080", false, "127.0.0.1:8080"},
		{afInet, "192.0.2.1:8080", false, "192.0.2.1:8080"},
		{afInet, "[::1]:8080", false, ""},
		{afInet6, "[::]:8080", false, "[::1]:8080"},
		{afInet6, "0.0.0.0:8080", false, "[::ffff:127.0.0.1]:8080"},
		{afInet6, "[2001:db8::1]:8080", false, "[2001:db8::1]:8080"},
	} {
		got, ok := reachBound(tc.family, map_(tc.bound), tc.v6only)
		if (tc.want == "") == ok || ok && got.String() != tc.want {
			t.Errorf("family %d bound %s: got %v %v, want %q", tc.family, tc.bound, got, ok, tc.want)
		}
	}
}

func TestPolicyConnect(t *testing.T) {
	p := Policy{
		Self:     []netip.Addr{ma("10.0.2.100")},
		Gateways: []netip.Addr{ma("10.0.2.2")},
		Ignore:   []netip.Prefix{mp("10.0.2.0/24"), mp("192.168.0.0/16")},
	}
	own := []netip.Prefix{mp("10.0.2.0/24"), mp("172.17.0.0/16")}
	bound := func(port uint16) (netip.AddrPort, bool) {
		if port == 80 {
			return map_("127.0.0.1:8080"), true
		}
		return netip.AddrPort{}, false
	}
	lo := p
	lo.HostLoopback = true
	for _, tc := range []struct {
		name   string
		p      *Policy
		family int
		dst    string
		act    action
		target string
	}{
		{"outside", &p, afInet, "198.51.100.7:443", egress, ""},
		{"outside v6", &p, afInet6, "[2001:db8::7]:443", egress, ""},
		{"outside mapped", &p, afInet6, "[::ffff:198.51.100.7]:443", egress, ""},
		{"ns loopback", &p, afInet, "127.0.0.1:5432", keep, ""},
		{"ns loopback bypassed port", &p, afInet, "127.0.0.1:80", redirect, "127.0.0.1:8080"},
		{"own address bypassed port", &p, afInet, "10.0.2.100:80", redirect, "127.0.0.1:8080"},
		{"tap subnet", &p, afInet, "10.0.2.50:80", keep, ""},
		{"bridge inside", &p, afInet, "172.17.0.2:80", keep, ""},
		{"ignored", &p, afInet, "192.168.1.1:80", keep, ""},
		{"gateway, host loopback off", &p, afInet, "10.0.2.2:5432", keep, ""},
		{"gateway, host loopback on", &lo, afInet, "10.0.2.2:5432", redirect, "127.0.0.1:5432"},
		{"gateway mapped, host loopback on", &lo, afInet6, "[::ffff:10.0.2.2]:5432", redirect, "[::ffff:127.0.0.1]:5432"},
		{"multicast", &p, afInet, "224.0.0.251:5353", keep, ""},
		{"broadcast", &p, afInet, "255.255.255.255:67", keep, ""},
		{"unspecified", &p, afInet, "0.0.0.0:80", keep, ""},
		{"link-local", &p, afInet6, "[fe80::1]:80", keep, ""},
		{"port 0", &p, afInet, "198.51.100.7:0", keep, ""},
	} {
		act, target := tc.p.connect(tc.family, map_(tc.dst), own, bound)
		if act != tc.act || (act == redirect && target.String() != tc.target) {
			t.Errorf("%s: got %v %v, want %v %s", tc.name, act, target, tc.act, tc.target)
		}
	}
}

func TestPickBind(t *testing.T) {
	v4any := Published{ID: 1, ParentIP: ma("0.0.0.0"), ParentPort: 8080}
	v6any := Published{ID: 2, ParentIP: ma("::"), ParentPort: 8080}
	v6lo := Published{ID: 3, ParentIP: ma("::1"), ParentPort: 8080}
	for _, tc := range []struct {
		family int
		v6only bool
		match  []Published
		want   string
	}{
		{afInet6, false, []Published{v4any, v6any}, "[::]:8080"},
		{afInet, false, []Published{v4any, v6any}, "0.0.0.0:8080"},
		{afInet, false, []Published{v6lo, v4any}, "0.0.0.0:8080"},
		{afInet6, true, []Published{v4any, v6lo}, "[::1]:8080"},
		{afInet, false, []Published{v6lo}, ""},
	} {
		got, ok := pickBind(tc.family, tc.v6only, tc.match)
		if (tc.want == "") == ok || ok && got.String() != tc.want {
			t.Errorf("family %d %v: got %v %v, want %q", tc.family, tc.match, got, ok, tc.want)
		}
	}
}
