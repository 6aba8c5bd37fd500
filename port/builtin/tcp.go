package builtin

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/unroot/unroot/internal/relay"
	"github.com/unroot/unroot/internal/sys"
)

// Transparent connects that get no answer fall back to a plain connect
// after this long, in case the child's reply routing is missing.
const transparentConnectTimeout = time.Second

const connectTimeout = 10 * time.Second

// serveTCP accepts until ctx ends or ln is closed. Accept errors caused by
// descriptor or memory exhaustion back off and retry: the listener never
// dies while the port is published.
func (d *Driver) serveTCP(ctx context.Context, ln *net.TCPListener, p *pool, target netip.AddrPort) {
	var conns sync.WaitGroup
	defer conns.Wait()
	backoff := 5 * time.Millisecond
	// A child socket is taken before accepting, so an accepted connection
	// never waits for one: when descriptors run out, connections wait in
	// the kernel's backlog instead of holding descriptors here, and the
	// loop cannot starve the pool's refill.
	var f net.Conn
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	for {
		if f == nil {
			var err error
			if f, err = p.get(ctx); err != nil {
				return
			}
		}
		c, err := ln.AcceptTCP()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			if !isTemporary(err) {
				d.log.Error("accept failed; retrying", "addr", ln.Addr(), "err", err)
				backoff = time.Second
			} else {
				d.log.Warn("accept failed; retrying", "addr", ln.Addr(), "err", err, "retry_in", backoff)
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		conns.Add(1)
		pf := f
		d.workers.Go(func() {
			defer conns.Done()
			d.handleTCP(ctx, c, p, pf, target)
		})
		f = nil
	}
}

// isTemporary reports errors that go away once descriptors or memory free up.
func isTemporary(err error) bool {
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED, syscall.EAGAIN} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

func (d *Driver) handleTCP(ctx context.Context, c *net.TCPConn, p *pool, f net.Conn, target netip.AddrPort) {
	defer c.Close()
	client := c.RemoteAddr().(*net.TCPAddr).AddrPort()
	child, err := d.dial(ctx, p, f, target, client)
	if err != nil {
		d.log.Debug("connect to the child failed; closing the client connection", "client", client, "target", target, "err", err)
		c.SetLinger(0)
		return
	}
	defer child.Close()
	if _, err := relay.RunOn(ctx, c, child.(*net.TCPConn), d.workers.Go); err != nil && ctx.Err() == nil {
		d.log.Debug("relay ended", "client", client, "err", err)
	}
}

// dial connects f (a pooled socket, or nil to take one) to target, bound
// to the client's address when that address can be kept (see
// docs/ports.md). A failed transparent connect retries plainly with a fresh
// socket.
func (d *Driver) dial(ctx context.Context, p *pool, f net.Conn, target, client netip.AddrPort) (net.Conn, error) {
	var err error
	if f == nil {
		if f, err = p.getTimeout(ctx, connectTimeout); err != nil {
			return nil, err
		}
	}
	src, ok := d.transparentSource(client, target, p.key.sotype == sys.SOCK_DGRAM)
	if !ok || !d.transparent(d.ctx) {
		return connect(ctx, f, p.key.family, target, connectTimeout)
	}
	if err := bindTransparent(f, p.key.family, src); err != nil {
		d.log.Debug("keeping the client address failed; connecting plainly", "client", client, "err", err)
		return connect(ctx, f, p.key.family, target, connectTimeout)
	}
	c, err := connect(ctx, f, p.key.family, target, transparentConnectTimeout)
	if err == nil || ctx.Err() != nil || errors.Is(err, syscall.ECONNREFUSED) {
		return c, err
	}
	d.log.Debug("transparent connect failed; connecting plainly", "client", client, "err", err)
	if f, err = p.getTimeout(ctx, connectTimeout); err != nil {
		return nil, err
	}
	return connect(ctx, f, p.key.family, target, connectTimeout)
}

// transparentSource returns the address to bind for a client, and false
// when the client's address cannot or need not be kept: loopback clients
// (the child's loopback is another interface), clients whose address
// family differs from the child target's, and UDP unless asked for and the
// child IP is loopback (the child routes only replies sent from loopback
// back to us; a TCP reply is also caught by connmark, a UDP one is not).
func (d *Driver) transparentSource(client, target netip.AddrPort, udp bool) (netip.AddrPort, bool) {
	if !d.opts.SourceIPTransparent || (udp && (!d.opts.SourceIPTransparentUDP || !target.Addr().IsLoopback())) {
		return netip.AddrPort{}, false
	}
	ip := client.Addr().Unmap()
	if !ip.IsValid() || ip.IsLoopback() || ip.IsUnspecified() || ip.Is4() != target.Addr().Is4() {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(ip, client.Port()), true
}
