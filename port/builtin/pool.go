package builtin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/unroot/unroot/internal/lograte"
	"github.com/unroot/unroot/internal/sys"
	"github.com/unroot/unroot/port"
)

type poolKey struct{ family, sotype int }

// pool keeps a few unconnected sockets from the child's netns ready, so an
// accepted connection costs no round trip to the child. A goroutine refills
// it in the background; under a burst, callers wait for the refill.
// It refills once the pool is half empty, not for every socket taken: a
// wake-up of the refill per connection cost the relay loop's thread a
// scheduler round trip each time.
//
// Sockets are raw descriptors: TCP ones go to the relay engine's epoll
// loop as they are, and only UDP flows wrap theirs for the runtime poller.
type pool struct {
	key   poolKey
	ready chan int
	low   chan struct{} // the pool is half empty
	kick  chan struct{} // a descriptor was freed: retry a failing refill now
	// starved is set while the refill fails (descriptors run out), so a
	// UDP port can free one of its own flows for a new client.
	starved atomic.Bool
	warn    lograte.Limiter // the refill's retry warning
	cancel  context.CancelFunc
	done    chan struct{}
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
	p := &pool{key: k, ready: make(chan int, d.opts.PoolSize), low: make(chan struct{}, 1), kick: make(chan struct{}, 1), cancel: cancel, done: make(chan struct{})}
	d.pools[k] = p
	go p.refill(ctx, d)
	return p
}

func (p *pool) refill(ctx context.Context, d *Driver) {
	defer close(p.done)
	var bo backoff
	for {
		// The refill is the only sender, so this send never blocks.
		for len(p.ready) < cap(p.ready) {
			fd, err := d.src.Socket(ctx, p.key.family, p.key.sotype)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				if errors.Is(err, port.ErrSourceClosed) {
					// The namespace is gone: the launcher is ending.
					d.log.Debug("no more sockets from the child", "err", err)
					return
				}
				// EMFILE and friends: wait and retry, never give up while
				// the driver lives.
				p.starved.Store(true)
				wait := bo.step()
				p.warn.Log(ctx, d.log, slog.LevelWarn, "getting a socket from the child failed; retrying", "err", err, "retry_in", wait)
				t := time.NewTimer(wait)
				select {
				case <-ctx.Done():
					t.Stop()
					return
				case <-p.kick:
					bo.reset()
				case <-t.C:
				}
				t.Stop()
				continue
			}
			bo.reset()
			p.starved.Store(false)
			p.ready <- fd
		}
		select {
		case <-p.low:
		case <-ctx.Done():
			return
		}
	}
}

// take returns a ready socket, or false if the pool is empty; it does not
// wait.
func (p *pool) take() (int, bool) {
	select {
	case fd := <-p.ready:
		if len(p.ready) <= cap(p.ready)/2 {
			p.wantMore()
		}
		return fd, true
	default:
		p.wantMore()
		return -1, false
	}
}

// freed tells a failing refill that a descriptor was just closed for it.
func (p *pool) freed() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

func (p *pool) wantMore() {
	select {
	case p.low <- struct{}{}:
	default:
	}
}

// get returns a ready socket, waiting for the refill if the pool is empty.
func (p *pool) get(ctx context.Context) (int, error) {
	if fd, ok := p.take(); ok {
		return fd, nil
	}
	select {
	case fd := <-p.ready:
		return fd, nil
	case <-ctx.Done():
		return -1, ctx.Err()
	}
}

// getTimeout is get bounded by timeout.
func (p *pool) getTimeout(ctx context.Context, timeout time.Duration) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	fd, err := p.get(ctx)
	if err != nil {
		return -1, fmt.Errorf("get a socket from the child: %w", err)
	}
	return fd, nil
}

func (p *pool) close() {
	p.cancel()
	<-p.done
	for {
		select {
		case fd := <-p.ready:
			sys.Close(fd)
		default:
			return
		}
	}
}
