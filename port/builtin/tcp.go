package builtin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"syscall"
	"time"

	"github.com/unroot/unroot/internal/lograte"
	"github.com/unroot/unroot/internal/relay"
	"github.com/unroot/unroot/internal/sys"
)

// Transparent connects that get no answer fall back to a plain connect
// after this long, in case the child's reply routing is missing.
const transparentConnectTimeout = time.Second

const connectTimeout = 10 * time.Second

// serveTCP relays the connections of ln until ctx ends. The relay
// engine's loop accepts them (see acceptor); this goroutine takes over
// whenever the loop cannot: it waits for a child socket or, after an
// accept error, backs off, then lets the loop accept again. Errors caused
// by descriptor or memory exhaustion are retried: the listener never dies
// while the port is published.
func (d *Driver) serveTCP(ctx context.Context, ln *tcpListener, p *pool, target netip.AddrPort, g *relay.Group) {
	a := &acceptor{d: d, ctx: ctx, p: p, g: g, target: target, child: -1, paused: make(chan struct{}, 1)}
	rl, err := g.Listen(ln.fd, a.accept)
	if err != nil {
		return // the driver is closing
	}
	defer func() {
		rl.Close()
		// The loop calls a.accept no more.
		if a.child >= 0 {
			sys.Close(a.child)
		}
	}()
	var bo backoff
	var warn lograte.Limiter
	for {
		if a.child < 0 {
			fd, err := p.get(ctx)
			if err != nil {
				return
			}
			a.child = fd
		}
		if a.err != nil {
			err := a.err
			a.err = nil
			if a.accepted {
				bo.reset()
			}
			level := slog.LevelWarn
			if !isTemporary(err) {
				level = slog.LevelError
				bo.longest()
			}
			wait := bo.step()
			warn.Log(ctx, d.log, level, "accepting on a published port failed; retrying", "addr", ln.addr, "err", err, "retry_in", wait)
			if !sleep(ctx, wait) {
				return
			}
		}
		a.accepted = false
		// A watch that fails comes back as a pause with its error.
		rl.Resume(func(err error) { a.pause(err) })
		select {
		case <-a.paused:
		case <-ctx.Done():
			return
		}
	}
}

// acceptor accepts on the relay loop's thread. Its fields belong to that
// thread while the listener is watched, and to serveTCP while it is
// paused: the pause and Resume pass them over.
type acceptor struct {
	d      *Driver
	ctx    context.Context
	p      *pool
	g      *relay.Group
	target netip.AddrPort
	paused chan struct{}

	// A child socket is taken before accepting, so an accepted connection
	// never waits for one: when descriptors run out, connections wait in
	// the kernel's backlog instead of holding descriptors here, and
	// accepting cannot starve the pool's refill.
	child    int
	err      error // why accepting paused, if it failed
	accepted bool  // a connection was accepted since the last Resume
}

// acceptBatch bounds the connections taken per readiness report, so a
// flood on one port leaves the loop to the connections it relays.
const acceptBatch = 32

// accept is the listener's relay.AcceptFunc.
func (a *acceptor) accept(lfd int, add func(relay.Pair) error) bool {
	d := a.d
	for range acceptBatch {
		if a.child < 0 {
			fd, ok := a.p.take()
			if !ok {
				return a.pause(nil)
			}
			a.child = fd
		}
		fd, client, err := sys.Accept(lfd)
		if err != nil {
			if errors.Is(err, sys.EAGAIN) {
				return true
			}
			if errors.Is(err, sys.ECONNABORTED) {
				continue // the client gave up: nothing to report or wait for
			}
			return a.pause(err)
		}
		a.accepted = true
		child := a.child
		a.child = -1
		// src is valid only if the client's address can be kept.
		src, keep := d.transparentSource(client, a.target, false)
		if keep && !d.transparentSettled(a.target) {
			// That goroutine is off the loop's thread: it adds as any
			// other would.
			d.startTCPPrepared(a.ctx, a.p, a.g.Add, fd, child, a.target, client, src)
		} else {
			d.startTCP(a.p, add, fd, child, a.target, client, src)
		}
	}
	return true
}

// pause hands accepting to serveTCP.
func (a *acceptor) pause(err error) bool {
	a.err = err
	a.paused <- struct{}{}
	return false
}

// startTCPPrepared is startTCP once the child is prepared for transparent
// sockets: the first clients whose address can be kept wait for that off
// the accept loop, in a goroutine that ends with the port.
func (d *Driver) startTCPPrepared(ctx context.Context, p *pool, add func(relay.Pair) error, client, child int, target, from, src netip.AddrPort) {
	d.prepareTransparent(target)
	d.bg.Add(1)
	go func() {
		defer d.bg.Done()
		if d.transparent(ctx, target); ctx.Err() != nil {
			// The port is gone.
			sys.Close(child)
			sys.CloseReset(client)
			return
		}
		d.startTCP(p, add, client, child, target, from, src)
	}()
}

// isTemporary reports errors that go away once descriptors or memory free
// up. (accept's EAGAIN and ECONNABORTED never get here: the loop takes
// them in its stride.)
func isTemporary(err error) bool {
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// startTCP starts connecting the pooled socket child to target, bound to
// src, the client's address, when that address can be kept (valid; see
// transparentSource and docs/ports.md), and gives both sockets to the
// relay. A transparent connect that fails or gets no answer is redone
// plainly with a fresh socket.
func (d *Driver) startTCP(p *pool, add func(relay.Pair) error, client, child int, target, from, src netip.AddrPort) {
	family := p.key.family
	timeout := connectTimeout
	var redial func() (int, time.Duration, error)
	if src.IsValid() && d.transparent(d.ctx, target) {
		if err := sys.BindTransparent(child, family, src); err != nil {
			d.log.Debug("keeping the client address failed; connecting plainly", "client", from, "err", err)
		} else {
			timeout = transparentConnectTimeout
			redial = func() (int, time.Duration, error) {
				fd, err := p.getTimeout(d.ctx, connectTimeout)
				if err != nil {
					return -1, 0, err
				}
				if err := startConnect(fd, family, target); err != nil {
					sys.Close(fd)
					return -1, 0, err
				}
				return fd, connectTimeout, nil
			}
		}
	}
	err := startConnect(child, family, target)
	if err != nil && redial != nil && !errors.Is(err, sys.ECONNREFUSED) {
		d.log.Debug("transparent connect failed; connecting plainly", "client", from, "err", err)
		sys.Close(child)
		child, timeout, err = redial()
		redial = nil
	}
	if err != nil {
		d.log.Debug("connect to the child failed; resetting the client connection", "client", from, "target", target, "err", err)
		if child >= 0 {
			sys.Close(child)
		}
		sys.CloseReset(client)
		return
	}
	pair := relay.Pair{Client: client, Child: child, ConnectTimeout: timeout, Redial: redial}
	if from.Addr().IsLoopback() {
		// The hop back to a client on this host never congests; the
		// child's side already has the namespace's default, set alike.
		pair.ClientCC = d.localCC
	}
	if err := add(pair); err != nil {
		d.log.Debug("connection dropped: the port is being removed", "client", from)
	}
}

// startConnect starts a non-blocking connect; a connect still under way is
// not an error.
func startConnect(fd, family int, target netip.AddrPort) error {
	if err := sys.Connect(fd, family, target); err != nil && !errors.Is(err, sys.EINPROGRESS) {
		return fmt.Errorf("connect %s in the child: %w", target, err)
	}
	return nil
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
