package sys

import (
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Address families and socket types, as port.SocketSource takes them.
const (
	AF_INET     = unix.AF_INET
	AF_INET6    = unix.AF_INET6
	SOCK_STREAM = unix.SOCK_STREAM
	SOCK_DGRAM  = unix.SOCK_DGRAM
)

// EINPROGRESS is Connect's answer while a non-blocking connect is under way.
const EINPROGRESS = unix.EINPROGRESS

// sockaddr converts an address for a socket of the given family.
func sockaddr(family int, ap netip.AddrPort) unix.Sockaddr {
	if family == unix.AF_INET {
		return &unix.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())}
	}
	return &unix.SockaddrInet6{Addr: ap.Addr().As16(), Port: int(ap.Port())}
}

// BindTransparent marks the socket fd (of the given family) IP_TRANSPARENT
// (IPV6_TRANSPARENT for AF_INET6) and SO_REUSEADDR, and binds it to src,
// which may be a foreign address. IP_TRANSPARENT needs CAP_NET_ADMIN in the
// user namespace owning the socket's netns. If setting it fails, the socket
// is left unbound.
func BindTransparent(fd, family int, src netip.AddrPort) error {
	level, opt := unix.SOL_IP, unix.IP_TRANSPARENT
	if family == unix.AF_INET6 {
		level, opt = unix.SOL_IPV6, unix.IPV6_TRANSPARENT
	}
	if err := unix.SetsockoptInt(fd, level, opt, 1); err != nil {
		return fmt.Errorf("setsockopt IP_TRANSPARENT: %w", err)
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	if err := unix.Bind(fd, sockaddr(family, src)); err != nil {
		return fmt.Errorf("bind %s: %w", src, err)
	}
	return nil
}

// Connect calls connect(2) on the non-blocking socket fd (of the given
// family). It returns EINPROGRESS while the handshake runs (the relay
// engine then watches the socket).
func Connect(fd, family int, dst netip.AddrPort) error {
	// A raw sockaddr and a raw system call: fd does not block, and the
	// relay loop's thread connects for every new connection.
	var (
		sa4 unix.RawSockaddrInet4
		sa6 unix.RawSockaddrInet6
		ptr unsafe.Pointer
		n   uintptr
	)
	if family == unix.AF_INET {
		sa4 = unix.RawSockaddrInet4{Family: unix.AF_INET, Port: ntohs(dst.Port()), Addr: dst.Addr().As4()}
		ptr, n = unsafe.Pointer(&sa4), unsafe.Sizeof(sa4)
	} else {
		sa6 = unix.RawSockaddrInet6{Family: unix.AF_INET6, Port: ntohs(dst.Port()), Addr: dst.Addr().As16()}
		ptr, n = unsafe.Pointer(&sa6), unsafe.Sizeof(sa6)
	}
	_, _, e := unix.RawSyscall(unix.SYS_CONNECT, uintptr(fd), uintptr(ptr), n)
	if e != 0 {
		return e
	}
	return nil
}

// ListenUnix binds and listens on a stream unix socket at path whose file
// has mode perm from its creation: Linux takes the file's mode from the
// socket's inode, which fchmod sets before bind, so no other user can
// connect between bind and a chmod. The umask still applies.
func ListenUnix(path string, perm uint32) (*os.File, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	if err := unix.Fchmod(fd, perm); err != nil {
		unix.Close(fd)
		return nil, err
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		unix.Close(fd)
		return nil, err
	}
	if err := unix.Listen(fd, unix.SOMAXCONN); err != nil {
		unix.Close(fd)
		os.Remove(path)
		return nil, err
	}
	return os.NewFile(uintptr(fd), path), nil
}

// EAGAIN is Accept's answer when no connection is waiting.
const EAGAIN = unix.EAGAIN

// ECONNABORTED is Accept's answer for a connection its client reset while
// it waited in the backlog.
const ECONNABORTED = unix.ECONNABORTED

// ECONNREFUSED is a connect's answer when nothing listens.
const ECONNREFUSED = unix.ECONNREFUSED

// Accept takes one connection from the non-blocking listening socket lfd;
// it does not block, so it skips the runtime's system call bookkeeping.
// The new socket is non-blocking and close-on-exec; its options are the
// listener's (see SetListenerOptions). It calls accept4 itself: x/sys's
// Accept4 spends a getsockopt per connection to tell L2TP from TCP.
func Accept(lfd int) (fd int, peer netip.AddrPort, err error) {
	var rsa unix.RawSockaddrAny
	n := uint32(unix.SizeofSockaddrAny)
	r, _, e := unix.RawSyscall6(unix.SYS_ACCEPT4, uintptr(lfd), uintptr(unsafe.Pointer(&rsa)), uintptr(unsafe.Pointer(&n)), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0, 0)
	if e != 0 {
		return -1, netip.AddrPort{}, e
	}
	return int(r), rawAddrPort(&rsa), nil
}

// rawAddrPort converts an IPv4 or IPv6 socket address (the zero value for
// any other family).
func rawAddrPort(rsa *unix.RawSockaddrAny) netip.AddrPort {
	switch rsa.Addr.Family {
	case unix.AF_INET:
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(rsa))
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), ntohs(sa.Port))
	case unix.AF_INET6:
		sa := (*unix.RawSockaddrInet6)(unsafe.Pointer(rsa))
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), ntohs(sa.Port))
	}
	return netip.AddrPort{}
}

func ntohs(p uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(&p))
	return uint16(b[0])<<8 | uint16(b[1])
}

// SetListenerOptions gives a TCP listening socket the options that Go's
// Accept sets on each connection (TCP_NODELAY, keep-alive probes after 15 s
// idle, every 15 s, 9 of them). Linux copies a listener's options to the
// sockets it accepts, so accepting with Accept costs no setsockopt.
func SetListenerOptions(fd int) error {
	for _, o := range []struct {
		name            string
		level, opt, val int
	}{
		{"TCP_NODELAY", unix.IPPROTO_TCP, unix.TCP_NODELAY, 1},
		{"SO_KEEPALIVE", unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1},
		{"TCP_KEEPIDLE", unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, 15},
		{"TCP_KEEPINTVL", unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, 15},
		{"TCP_KEEPCNT", unix.IPPROTO_TCP, unix.TCP_KEEPCNT, 9},
	} {
		if err := unix.SetsockoptInt(fd, o.level, o.opt, o.val); err != nil {
			return fmt.Errorf("set %s on the listener: %w", o.name, err)
		}
	}
	return nil
}

// Read reads from a raw descriptor: one datagram from a UDP socket. It
// does not wait: a socket with nothing queued returns EAGAIN.
func Read(fd int, b []byte) (int, error) { return unix.Read(fd, b) }

// DupCloexec duplicates a descriptor, close-on-exec; the copy shares the
// open file, its O_NONBLOCK included.
func DupCloexec(fd int) (int, error) { return unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0) }

// Close closes a raw descriptor.
func Close(fd int) error { return unix.Close(fd) }

// CloseReset closes a TCP socket with a reset instead of a FIN, as a
// refused connect looks to the client.
func CloseReset(fd int) error {
	unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	return unix.Close(fd)
}

// CongestionControlSysctl is the calling thread's network namespace's
// default TCP congestion control; each namespace has its own, and a new
// one starts from the host's.
const CongestionControlSysctl = "/proc/sys/net/ipv4/tcp_congestion_control"

// LocalCongestionControl returns the TCP congestion control for
// connections that never leave this machine (loopback, the relay's hops),
// or "" to keep the default of the calling thread's network namespace.
//
// It replaces only BBR. On a device without the fq qdisc (loopback has
// none), BBR paces with a timer per burst, and on a hop that never
// congests that pacing is pure cost: it took a third of the throughput of
// a published port (docs/ports.md has the figures). The replacement is CUBIC where the host lets unprivileged users
// pick it (net.ipv4.tcp_allowed_congestion_control), else Reno, which is
// always allowed.
func LocalCongestionControl() string {
	b, err := os.ReadFile(CongestionControlSysctl)
	if err != nil || !strings.HasPrefix(string(b), "bbr") {
		return ""
	}
	if b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_allowed_congestion_control"); err == nil && slices.Contains(strings.Fields(string(b)), "cubic") {
		return "cubic"
	}
	return "reno"
}
