package builtin

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"

	"github.com/unroot/unroot/internal/sys"
)

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
		serr = sys.BindTransparent(int(fd), family, src)
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
			cerr = sys.Connect(int(fd), family, dst)
			return !errors.Is(cerr, sys.EINPROGRESS)
		}
		var done bool
		done, cerr = sys.ConnectResult(int(fd))
		return done
	})
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return err
	}
	return cerr
}
