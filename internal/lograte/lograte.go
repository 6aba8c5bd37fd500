// Package lograte keeps a warning that repeats under pressure (descriptor
// exhaustion, a flood of oversized datagrams) from flooding the log: the
// first line goes out, then at most one line per interval, which says how
// many were held back since the last.
package lograte

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// DefaultEvery is the interval of a Limiter whose Every is zero.
const DefaultEvery = 5 * time.Second

// Limiter rate-limits one kind of log line. The zero value is ready to use;
// it is safe for concurrent use.
type Limiter struct {
	// Every is the least time between two lines; zero means DefaultEvery.
	Every time.Duration
	// Now is the clock, for tests; nil means time.Now.
	Now func() time.Time

	mu   sync.Mutex
	last time.Time
	held int
}

// Allow reports whether a line may go out now and, if so, how many were
// held back since the last one that did.
func (l *Limiter) Allow() (ok bool, held int) {
	now := time.Now
	if l.Now != nil {
		now = l.Now
	}
	every := l.Every
	if every <= 0 {
		every = DefaultEvery
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	t := now()
	if !l.last.IsZero() && t.Sub(l.last) < every {
		l.held++
		return false, 0
	}
	l.last, held, l.held = t, l.held, 0
	return true, held
}

// Log logs msg at level through log if Allow lets it, adding the attribute
// "repeated" (the lines held back since the last) when there were any.
func (l *Limiter) Log(ctx context.Context, log *slog.Logger, level slog.Level, msg string, args ...any) {
	if !log.Enabled(ctx, level) {
		return
	}
	ok, held := l.Allow()
	if !ok {
		return
	}
	if held > 0 {
		args = append(args, "repeated", held)
	}
	log.Log(ctx, level, msg, args...)
}
