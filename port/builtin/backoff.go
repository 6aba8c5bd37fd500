package builtin

import (
	"context"
	"time"
)

// backoff paces the retries of a loop that must not give up while its
// port lives (accept, UDP read, socket refill under descriptor
// exhaustion): 5 ms, doubling up to a second, back to 5 ms on success.
type backoff struct{ next time.Duration }

const (
	minBackoff = 5 * time.Millisecond
	maxBackoff = time.Second
)

// step returns how long to wait before the next try and doubles it.
func (b *backoff) step() time.Duration {
	d := max(b.next, minBackoff)
	b.next = min(d*2, maxBackoff)
	return d
}

// longest makes the next step the longest: for errors that time, not
// freed descriptors, may cure.
func (b *backoff) longest() { b.next = maxBackoff }

func (b *backoff) reset() { b.next = 0 }

// sleep waits d and reports false if ctx ended first.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
