package sys

import (
	"errors"
	"fmt"
	"net/netip"
	"os"

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

// Connect calls connect(2) on the socket fd (of the given family). On a
// non-blocking socket it returns EINPROGRESS while the handshake runs; wait
// for the socket to become writable, then ask ConnectResult.
func Connect(fd, family int, dst netip.AddrPort) error {
	return unix.Connect(fd, sockaddr(family, dst))
}

// ConnectResult says whether the connect started on the non-blocking socket
// fd has finished and, if so, with what error (nil: connected). The poller
// may report a socket writable from before the connect (an unconnected
// socket polls as hung up), so only a pending error (SO_ERROR) or a peer
// address counts as finished.
func ConnectResult(fd int) (done bool, err error) {
	n, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err == nil && n != 0 {
		return true, unix.Errno(n)
	}
	if _, perr := unix.Getpeername(fd); errors.Is(perr, unix.ENOTCONN) {
		return false, err
	}
	return true, err
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
