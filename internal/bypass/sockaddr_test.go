package bypass

import (
	"encoding/binary"
	"net/netip"
	"testing"
)

func sa4(ip string, port uint16) []byte {
	b := make([]byte, 16)
	binary.LittleEndian.PutUint16(b, afInet)
	binary.BigEndian.PutUint16(b[2:], port)
	a := netip.MustParseAddr(ip).As4()
	copy(b[4:], a[:])
	return b
}

func sa6(ip string, port uint16, scope uint32) []byte {
	b := make([]byte, 28)
	binary.LittleEndian.PutUint16(b, afInet6)
	binary.BigEndian.PutUint16(b[2:], port)
	a := netip.MustParseAddr(ip).As16()
	copy(b[8:], a[:])
	binary.LittleEndian.PutUint32(b[24:], scope)
	return b
}

func TestDecodeSockaddr(t *testing.T) {
	for _, tc := range []struct {
		name string
		b    []byte
		fam  int
		want string
		ok   bool
	}{
		{"v4", sa4("10.1.2.3", 8080), afInet, "10.1.2.3:8080", true},
		{"v4 any", sa4("0.0.0.0", 80), afInet, "0.0.0.0:80", true},
		{"v6", sa6("2001:db8::1", 443, 0), afInet6, "[2001:db8::1]:443", true},
		{"v6 mapped", sa6("::ffff:127.0.0.1", 53, 0), afInet6, "[::ffff:127.0.0.1]:53", true},
		{"v6 scoped link-local", sa6("fe80::1", 22, 2), afInet6, "[fe80::1%scoped]:22", true},
		{"v6 short 24", sa6("::1", 1, 0)[:24], afInet6, "[::1]:1", true},
		{"v6 too short", sa6("::1", 1, 0)[:20], 0, "", false},
		{"v4 too short", sa4("1.2.3.4", 1)[:8], 0, "", false},
		{"unix", []byte{1, 0, '/', 't'}, 1, "", false},
		{"empty", nil, 0, "", false},
	} {
		fam, ap, ok := decodeSockaddr(tc.b)
		if ok != tc.ok || fam != tc.fam || (ok && ap.String() != tc.want) {
			t.Errorf("%s: got %d %v %v, want %d %s %v", tc.name, fam, ap, ok, tc.fam, tc.want, tc.ok)
		}
	}
}

func FuzzDecodeSockaddr(f *testing.F) {
	f.Add(sa4("1.2.3.4", 80))
	f.Add(sa6("fe80::1", 80, 3))
	f.Add([]byte{10, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		fam, ap, ok := decodeSockaddr(b)
		if !ok {
			return
		}
		if fam == afInet && !ap.Addr().Is4() || fam == afInet6 && !ap.Addr().Is6() {
			t.Fatalf("family %d with address %v", fam, ap)
		}
	})
}

const route4 = `Iface	Destination	Gateway 	Flags	RefCnt	Use	Metric	Mask		MTU	Window	IRTT
tap0	00000000	0202000A	0003	0	0	0	00000000	0	0	0
tap0	0002000A	00000000	0001	0	0	0	00FFFFFF	0	0	0
docker0	000011AC	00000000	0001	0	0	0	0000FFFF	0	0	0
`

const route6 = `00000000000000000000000000000001 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000001 00000000 00000001       lo
fd000000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     tap0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 fd000000000000000000000000000002 00000400 00000001 00000000 00000003     tap0
`

func TestParseRoutes(t *testing.T) {
	got4 := parseRoutes4(route4)
	want4 := []netip.Prefix{netip.MustParsePrefix("10.0.2.0/24"), netip.MustParsePrefix("172.17.0.0/16")}
	if len(got4) != len(want4) || got4[0] != want4[0] || got4[1] != want4[1] {
		t.Errorf("v4 routes: got %v, want %v", got4, want4)
	}
	got6 := parseRoutes6(route6)
	want6 := []netip.Prefix{netip.MustParsePrefix("::1/128"), netip.MustParsePrefix("fd00::/64")}
	if len(got6) != len(want6) || got6[0] != want6[0] || got6[1] != want6[1] {
		t.Errorf("v6 routes: got %v, want %v", got6, want6)
	}
}

func FuzzParseRoutes(f *testing.F) {
	f.Add(route4)
	f.Add(route6)
	f.Fuzz(func(t *testing.T, s string) {
		for _, p := range append(parseRoutes4(s), parseRoutes6(s)...) {
			if !p.IsValid() || p.Bits() == 0 {
				t.Fatalf("invalid or default prefix %v", p)
			}
		}
	})
}

func TestParseTgid(t *testing.T) {
	for in, want := range map[string]int{
		"Name:\tgo\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t4242\nNgid:\t0\nPid:\t4250\n": 4242,
		"Tgid:\t1\n": 1,
		"Tgid:\tx\n": 0,
		"Pid:\t7\n":  0,
		"":           0,
	} {
		got, ok := parseTgid(in)
		if got != want || ok != (want > 0) {
			t.Errorf("parseTgid(%q) = %d, %v; want %d", in, got, ok, want)
		}
	}
}

func FuzzParseTgid(f *testing.F) {
	f.Add("Tgid:\t4242\nPid:\t4250\n")
	f.Fuzz(func(t *testing.T, s string) {
		if n, ok := parseTgid(s); ok && n <= 0 {
			t.Fatalf("parseTgid(%q) = %d, true", s, n)
		}
	})
}
