package sys

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// cmsg builds one control message as the kernel lays it out.
func cmsg(level, typ int, data []byte) []byte {
	b := make([]byte, unix.CmsgSpace(len(data)))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level, h.Type = int32(level), int32(typ)
	h.SetLen(unix.CmsgLen(len(data)))
	copy(b[unix.CmsgLen(0):], data)
	return b
}

// inPktinfo is struct in_pktinfo with ifindex 1, spec_dst and addr.
func inPktinfo(specDst, addr string) []byte {
	b := make([]byte, unix.SizeofInet4Pktinfo)
	binary.NativeEndian.PutUint32(b, 1)
	s, a := netip.MustParseAddr(specDst).As4(), netip.MustParseAddr(addr).As4()
	copy(b[4:8], s[:])
	copy(b[8:12], a[:])
	return b
}

// in6Pktinfo is struct in6_pktinfo with addr and ifindex.
func in6Pktinfo(addr string, ifindex uint32) []byte {
	b := make([]byte, unix.SizeofInet6Pktinfo)
	a := netip.MustParseAddr(addr).As16()
	copy(b, a[:])
	binary.NativeEndian.PutUint32(b[16:], ifindex)
	return b
}

func concat(bs ...[]byte) []byte {
	var out []byte
	for _, b := range bs {
		out = append(out, b...)
	}
	return out
}

var pktinfoDstTests = []struct {
	name string
	oob  []byte
	want string // "" = no address
}{
	{"empty", nil, ""},
	{"v4 takes addr, not spec_dst", cmsg(unix.IPPROTO_IP, unix.IP_PKTINFO, inPktinfo("10.0.0.9", "192.0.2.7")), "192.0.2.7"},
	{"v6", cmsg(unix.IPPROTO_IPV6, unix.IPV6_PKTINFO, in6Pktinfo("2001:db8::5", 1)), "2001:db8::5"},
	{"v4-mapped v6 comes back as v4", cmsg(unix.IPPROTO_IPV6, unix.IPV6_PKTINFO, in6Pktinfo("::ffff:192.0.2.8", 1)), "192.0.2.8"},
	{"after another message", concat(
		cmsg(unix.SOL_SOCKET, unix.SO_TIMESTAMP, make([]byte, 16)),
		cmsg(unix.IPPROTO_IP, unix.IP_PKTINFO, inPktinfo("0.0.0.0", "127.0.0.2")),
	), "127.0.0.2"},
	{"short v4 payload", cmsg(unix.IPPROTO_IP, unix.IP_PKTINFO, make([]byte, 8)), ""},
	{"short v6 payload", cmsg(unix.IPPROTO_IPV6, unix.IPV6_PKTINFO, make([]byte, 16)), ""},
	{"other level", cmsg(unix.IPPROTO_IPV6, unix.IP_PKTINFO, inPktinfo("0.0.0.0", "192.0.2.7")), ""},
	{"truncated header", []byte{1, 2, 3}, ""},
}

func TestPktinfoDst(t *testing.T) {
	for _, tt := range pktinfoDstTests {
		t.Run(tt.name, func(t *testing.T) {
			got := PktinfoDst(tt.oob)
			if tt.want == "" {
				if got.IsValid() {
					t.Errorf("PktinfoDst = %v, want none", got)
				}
				return
			}
			if want := netip.MustParseAddr(tt.want); got != want {
				t.Errorf("PktinfoDst = %v, want %v", got, want)
			}
		})
	}
}

func FuzzPktinfoDst(f *testing.F) {
	for _, tt := range pktinfoDstTests {
		f.Add(tt.oob)
	}
	f.Fuzz(func(t *testing.T, oob []byte) {
		PktinfoDst(oob) // must not panic
	})
}

func TestPktinfoSrc(t *testing.T) {
	for _, tt := range []struct {
		name   string
		v6sock bool
		src    netip.Addr
		want   []byte
	}{
		{"invalid", false, netip.Addr{}, nil},
		{"invalid on v6", true, netip.Addr{}, nil},
		{"v4 sets spec_dst", false, netip.MustParseAddr("192.0.2.7"),
			cmsg(unix.IPPROTO_IP, unix.IP_PKTINFO, func() []byte {
				b := make([]byte, unix.SizeofInet4Pktinfo)
				copy(b[4:8], []byte{192, 0, 2, 7})
				return b
			}())},
		{"v6 on v4 socket", false, netip.MustParseAddr("2001:db8::5"), nil},
		{"v6", true, netip.MustParseAddr("2001:db8::5"), cmsg(unix.IPPROTO_IPV6, unix.IPV6_PKTINFO, in6Pktinfo("2001:db8::5", 0))},
		{"v4 on v6 socket is mapped", true, netip.MustParseAddr("192.0.2.7"), cmsg(unix.IPPROTO_IPV6, unix.IPV6_PKTINFO, in6Pktinfo("::ffff:192.0.2.7", 0))},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := PktinfoSrc(tt.v6sock, tt.src)
			if string(got) != string(tt.want) {
				t.Errorf("PktinfoSrc(%v, %v) = %x, want %x", tt.v6sock, tt.src, got, tt.want)
			}
		})
	}
}

// TestPktinfoLoopback checks the kernel side: a datagram to a loopback
// address other than the bound one reports that address as destination.
func TestPktinfoLoopback(t *testing.T) {
	for _, tt := range []struct {
		network, listen, to string
		v6                  bool
	}{
		{"udp4", "0.0.0.0:0", "127.0.0.3", false},
		{"udp6", "[::]:0", "::1", true},
	} {
		t.Run(tt.network, func(t *testing.T) {
			pc, err := net.ListenPacket(tt.network, tt.listen)
			if err != nil {
				t.Skipf("no %s on this host: %v", tt.network, err)
			}
			defer pc.Close()
			uc := pc.(*net.UDPConn)
			rc, err := uc.SyscallConn()
			if err != nil {
				t.Fatal(err)
			}
			var (
				v6   bool
				perr error
			)
			if err := rc.Control(func(fd uintptr) { v6, perr = EnablePktinfo(int(fd)) }); err != nil || perr != nil {
				t.Fatalf("EnablePktinfo: %v %v", err, perr)
			}
			if v6 != tt.v6 {
				t.Errorf("EnablePktinfo v6 = %v, want %v", v6, tt.v6)
			}
			to := netip.AddrPortFrom(netip.MustParseAddr(tt.to), uc.LocalAddr().(*net.UDPAddr).AddrPort().Port())
			c, err := net.DialUDP(tt.network, nil, net.UDPAddrFromAddrPort(to))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write([]byte("x")); err != nil {
				t.Fatal(err)
			}
			uc.SetReadDeadline(time.Now().Add(5 * time.Second))
			buf, oob := make([]byte, 16), make([]byte, 128)
			_, oobn, _, _, err := uc.ReadMsgUDPAddrPort(buf, oob)
			if err != nil {
				t.Fatal(err)
			}
			if got := PktinfoDst(oob[:oobn]); got != to.Addr() {
				t.Errorf("PktinfoDst = %v, want %v", got, to.Addr())
			}
		})
	}
}
