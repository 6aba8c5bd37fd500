package builtin

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/unroot/unroot/internal/sys"
)

type poolKey struct{ family, sotype int }

// pool keeps a few unconnected sockets from the child's netns ready, so an
// accepted connection costs no round trip to the child. A goroutine refills
// it in the background; under a burst, callers wait for the refill.
//
// Sockets are kept as net.Conn values already registered with the runtime
// poller: converting costs a dup(2), and doing it here means descriptor
// exhaustion only slows the refill down instead of failing a connection.
type pool struct {
	key    poolKey
	ready  chan net.Conn
	cancel context.CancelFunc
	done   chan struct{}
}

func (d *Driver) poolLocked(target netip.AddrPort, transport string) *pool {
	k := poolKey{family: sys.AF_INET, sotype: sys.SOCK_STREAM}
	if target.Addr().Is6() {
		k.family = sys.AF_INET6
	}
	if transport == "udp" {
		k.sotype = sys.SOCK_DGRAM
	}
	if p, ok := d.pools[k]; ok {
		return p
	}
	ctx, cancel := context.WithCancel(d.ctx)
	p := &pool{key: k, ready: make(chan net.Conn, d.opts.PoolSize), cancel: cancel, done: make(chan struct{})}
	d.pools[k] = p
	go p.refill(ctx, d)
	return p
}

func (p *pool) refill(ctx context.Context, d *Driver) {
	defer close(p.done)
	backoff := 5 * time.Millisecond
	for {
		c, err := p.fetch(ctx, d)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			// EMFILE and friends: wait and retry, never give up while the
			// driver lives.
			d.log.Warn("getting a socket from the child failed; retrying", "err", err, "retry_in", backoff)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		select {
		case p.ready <- c:
		case <-ctx.Done():
			c.Close()
			return
		}
	}
}

func (p *pool) fetch(ctx context.Context, d *Driver) (net.Conn, error) {
	f, err := d.src.Socket(ctx, p.key.family, p.key.sotype)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	c, err := net.FileConn(f)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// get returns a ready socket, waiting for the refill if the pool is empty.
func (p *pool) get(ctx context.Context) (net.Conn, error) {
	select {
	case c := <-p.ready:
		return c, nil
	default:
	}
	select {
	case c := <-p.ready:
		return c, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// getTimeout is get bounded by timeout.
func (p *pool) getTimeout(ctx context.Context, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := p.get(ctx)
	if err != nil {
		return nil, fmt.Errorf("get a socket from the child: %w", err)
	}
	return c, nil
}

func (p *pool) close() {
	p.cancel()
	<-p.done
	for {
		select {
		case c := <-p.ready:
			c.Close()
		default:
			return
		}
	}
}
