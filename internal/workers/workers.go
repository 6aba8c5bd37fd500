// Package workers runs short functions on goroutines that are kept after
// they finish, for a while, to run the next one. A forwarder starts a few
// goroutines per connection; a fresh goroutine grows its stack by copying
// as the connection's call chain deepens (connect, splice, shutdown), which
// was a tenth of the forwarder's CPU at ten thousand connections a second.
// A kept goroutine has its stack grown already.
package workers

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Pool hands functions to idle goroutines, starting one when none is idle.
// Idle goroutines end after the idle timeout or when the pool's context
// ends; Wait waits for all of them.
type Pool struct {
	ctx  context.Context
	idle time.Duration
	work chan func()
	wg   sync.WaitGroup
	// spawned counts the goroutines started, for tests.
	spawned atomic.Int64
}

// New returns a pool whose goroutines end when ctx does or after idle
// without work.
func New(ctx context.Context, idle time.Duration) *Pool {
	return &Pool{ctx: ctx, idle: idle, work: make(chan func())}
}

// Go runs fn on an idle goroutine of the pool, or on a new one. It never
// blocks. Once the pool's context has ended, fn still runs, on a new
// goroutine that is not kept.
func (p *Pool) Go(fn func()) {
	select {
	case p.work <- fn:
		return
	default:
	}
	p.wg.Add(1)
	p.spawned.Add(1)
	go p.loop(fn)
}

func (p *Pool) loop(fn func()) {
	defer p.wg.Done()
	var t *time.Timer
	for {
		fn()
		if p.ctx.Err() != nil {
			return
		}
		if t == nil {
			t = time.NewTimer(p.idle)
		} else {
			t.Reset(p.idle)
		}
		select {
		case fn = <-p.work:
		case <-t.C:
			return
		case <-p.ctx.Done():
			t.Stop()
			return
		}
	}
}

// Wait waits until every goroutine of the pool has ended: call it after the
// pool's context ended and the last Go returned.
func (p *Pool) Wait() { p.wg.Wait() }
