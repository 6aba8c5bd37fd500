package builtin

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// sockaddr converts an address for a socket of the given family.
func sockaddr(family int, ap netip.AddrPort) unix.Sockaddr {
	if family == unix.AF_INET {
		return &unix.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())}
	}
	return &unix.SockaddrInet6{Addr: ap.Addr().As16(), Port: int(ap.Port())}
}

// bindTransparent marks c IP_TRANSPARENT and binds it to src, a foreign
// address. It needs CAP_NET_ADMIN in the user namespace owning the socket's
// netns, which the parent has. On failure the socket is left unbound and can
// still be connected normally.
func bindTransparent(c net.Conn, family int, src netip.AddrPort) error {
	rc, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		level, opt := unix.SOL_IP, unix.IP_TRANSPARENT
		if family == unix.AF_INET6 {
			level, opt = unix.SOL_IPV6, unix.IPV6_TRANSPARENT
		}
		if serr = unix.SetsockoptInt(int(fd), level, opt, 1); serr != nil {
			serr = fmt.Errorf("setsockopt IP_TRANSPARENT: %w", serr)
			return
		}
		_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
		if serr = unix.Bind(int(fd), sockaddr(family, src)); serr != nil {
			serr = fmt.Errorf("bind %s: %w", src, serr)
		}
	})
	return errors.Join(err, serr)
}

// connect connects a pooled socket to dst without blocking a thread,
// bounded by timeout and ctx. On failure c is closed.
func connect(ctx context.Context, c net.Conn, family int, dst netip.AddrPort, timeout time.Duration) (net.Conn, error) {
	err := connectRaw(ctx, c, family, dst, timeout)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("connect %s in the child: %w", dst, err)
	}
	c.SetWriteDeadline(time.Time{})
	return c, nil
}

func connectRaw(ctx context.Context, c net.Conn, family int, dst netip.AddrPort, timeout time.Duration) error {
	rc, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := c.SetWriteDeadline(deadline); err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { c.SetWriteDeadline(time.Unix(1, 0)) })
	defer stop()
	started := false
	var cerr error
	err = rc.Write(func(fd uintptr) bool {
		if !started {
			started = true
			cerr = unix.Connect(int(fd), sockaddr(family, dst))
			return !errors.Is(cerr, unix.EINPROGRESS)
		}
		var n int
		if n, cerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR); cerr == nil && n != 0 {
			cerr = unix.Errno(n)
			return true
		}
		// The poller may report the socket writable from before the
		// connect (an unconnected socket polls as hung up); only a peer
		// address says the handshake finished.
		if _, err := unix.Getpeername(int(fd)); errors.Is(err, unix.ENOTCONN) {
			return false
		}
		return true
	})
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return err
	}
	return cerr
}
