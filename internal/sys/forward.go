package sys

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// EADDRINUSE is BindAny's answer when the port is taken.
const EADDRINUSE = unix.EADDRINUSE

// AF_UNIX is the family of a host unix socket a forward connects to.
const AF_UNIX = unix.AF_UNIX

// BindAny binds the socket fd (of the given family and type) to the
// wildcard address at port, SO_REUSEADDR, and listens when it is a stream
// socket. An AF_INET6 socket is made dual-stack (IPV6_V6ONLY off), so it
// takes IPv4 on 0.0.0.0 too. The caller must hold CAP_NET_BIND_SERVICE in
// the socket's network namespace for ports below 1024 (a launcher does in
// its child's).
func BindAny(fd, family, sotype int, port uint16) error {
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	var sa unix.Sockaddr = &unix.SockaddrInet4{Port: int(port)}
	if family == unix.AF_INET6 {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0); err != nil {
			return fmt.Errorf("setsockopt IPV6_V6ONLY: %w", err)
		}
		sa = &unix.SockaddrInet6{Port: int(port)}
	}
	if err := unix.Bind(fd, sa); err != nil {
		return err
	}
	if sotype == unix.SOCK_STREAM {
		return unix.Listen(fd, unix.SOMAXCONN)
	}
	return nil
}

// UnixSocket makes a non-blocking, close-on-exec stream unix socket.
func UnixSocket() (int, error) {
	return unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
}

// ConnectUnix connects the non-blocking unix socket fd to path. A unix
// connect completes at once or fails: EAGAIN means the server's backlog is
// full.
func ConnectUnix(fd int, path string) error {
	return unix.Connect(fd, &unix.SockaddrUnix{Name: path})
}

// ListenAny makes a socket of type sotype in the calling thread's network
// namespace bound on the wildcard address at port (listening, for a
// stream socket): dual-stack where the namespace has IPv6, IPv4 where not.
// Stream sockets get SetListenerOptions.
func ListenAny(sotype int, port uint16) (int, error) {
	var first error
	for _, family := range []int{unix.AF_INET6, unix.AF_INET} {
		fd, err := Socket(family, sotype)
		if err == nil {
			if err = BindAny(fd, family, sotype, port); err == nil && sotype == unix.SOCK_STREAM {
				err = SetListenerOptions(fd)
			}
			if err == nil {
				return fd, nil
			}
			unix.Close(fd)
		}
		if errors.Is(err, unix.EADDRINUSE) {
			return -1, err
		}
		if first == nil {
			first = err
		}
	}
	return -1, first
}

// SetNonblock puts fd in non-blocking mode.
func SetNonblock(fd int) error { return unix.SetNonblock(fd, true) }

// SetCongestionControl sets the TCP congestion control of the socket fd
// (see LocalCongestionControl).
func SetCongestionControl(fd int, cc string) error {
	return unix.SetsockoptString(fd, unix.IPPROTO_TCP, unix.TCP_CONGESTION, cc)
}
