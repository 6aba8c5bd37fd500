package sys

import (
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestSocketOptions(t *testing.T) {
	for _, tc := range []struct {
		sotype  int
		nodelay int
	}{{SOCK_STREAM, 1}, {SOCK_DGRAM, -1}} {
		fd, err := Socket(AF_INET, tc.sotype)
		if err != nil {
			t.Fatal(err)
		}
		if fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0); err != nil || fl&unix.O_NONBLOCK == 0 {
			t.Errorf("type %d: not non-blocking (flags %#x, %v)", tc.sotype, fl, err)
		}
		if tc.nodelay >= 0 {
			if v, err := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY); err != nil || v != tc.nodelay {
				t.Errorf("type %d: TCP_NODELAY = %d, %v; want %d", tc.sotype, v, err, tc.nodelay)
			}
		}
		unix.Close(fd)
	}
}

func TestHasChildren(t *testing.T) {
	cmd := exec.Command("sleep", "10")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if !HasChildren() {
		t.Error("HasChildren = false with a running child")
	}
	cmd.Process.Kill()
	cmd.Wait()
	// No other test in this package starts processes.
	if HasChildren() {
		t.Error("HasChildren = true after the only child was reaped")
	}
}

// TestAccept checks the peer address Accept parses from the raw sockaddr,
// for both families, and that the accepted socket has the listener's
// options and is non-blocking.
func TestAccept(t *testing.T) {
	for _, tc := range []struct {
		family int
		addr   netip.Addr
	}{{AF_INET, netip.MustParseAddr("127.0.0.1")}, {AF_INET6, netip.IPv6Loopback()}} {
		lfd, err := unix.Socket(tc.family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(lfd)
		if err := SetListenerOptions(lfd); err != nil {
			t.Fatal(err)
		}
		if err := unix.Bind(lfd, sockaddr(tc.family, netip.AddrPortFrom(tc.addr, 0))); err != nil {
			t.Fatalf("bind %s: %v", tc.addr, err)
		}
		if err := unix.Listen(lfd, 8); err != nil {
			t.Fatal(err)
		}
		if _, _, err := Accept(lfd); err != unix.EAGAIN {
			t.Errorf("Accept with nobody waiting = %v, want EAGAIN", err)
		}
		lsa, _ := unix.Getsockname(lfd)
		c, err := net.Dial("tcp", netip.AddrPortFrom(tc.addr, uint16(port(lsa))).String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fd, peer, err := Accept(lfd)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		if want := c.LocalAddr().(*net.TCPAddr).AddrPort(); peer != want {
			t.Errorf("peer = %v, want %v", peer, want)
		}
		if v, err := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY); err != nil || v != 1 {
			t.Errorf("accepted socket TCP_NODELAY = %d, %v; want inherited 1", v, err)
		}
		if v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE); err != nil || v != 1 {
			t.Errorf("accepted socket SO_KEEPALIVE = %d, %v; want inherited 1", v, err)
		}
		if fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0); err != nil || fl&unix.O_NONBLOCK == 0 {
			t.Errorf("accepted socket not non-blocking (flags %#x, %v)", fl, err)
		}
	}
}

func port(sa unix.Sockaddr) int {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return sa.Port
	case *unix.SockaddrInet6:
		return sa.Port
	}
	return 0
}

// TestLocalCongestionControl: whatever the host runs, the choice is empty
// or one an unprivileged socket may set.
func TestLocalCongestionControl(t *testing.T) {
	cc := LocalCongestionControl()
	host, err := os.ReadFile(CongestionControlSysctl)
	if err != nil {
		t.Fatal(err)
	}
	if isBBR := strings.HasPrefix(string(host), "bbr"); isBBR != (cc != "") {
		t.Fatalf("host runs %q, LocalCongestionControl = %q; want a replacement exactly for BBR", strings.TrimSpace(string(host)), cc)
	}
	if cc == "" {
		return
	}
	fd, err := Socket(AF_INET, SOCK_STREAM)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.SetsockoptString(fd, unix.IPPROTO_TCP, unix.TCP_CONGESTION, cc); err != nil {
		t.Fatalf("set %q: %v", cc, err)
	}
	if got, err := unix.GetsockoptString(fd, unix.IPPROTO_TCP, unix.TCP_CONGESTION); err != nil || got != cc {
		t.Errorf("congestion control = %q, %v; want %q", got, err, cc)
	}
}
