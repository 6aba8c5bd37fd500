package helper

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Restart policy: a helper that keeps dying is given up on rather than
// restarted in a loop.
const (
	maxRestarts   = 5
	restartWindow = time.Minute
	firstBackoff  = 50 * time.Millisecond
	maxBackoff    = 2 * time.Second
)

// Kept is a helper that is started again when it exits on its own: a lost
// slirp4netns or pasta otherwise leaves the command without a network for
// the rest of its life, and nobody notices. Each loss and restart is logged.
type Kept struct {
	name    string
	log     *slog.Logger
	restart func(context.Context) (*Process, error)

	ctx    context.Context // alive until Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu  sync.Mutex
	cur *Process
}

// Keep watches p and calls restart when it exits before Close. restart nil
// means the helper cannot be restarted (its loss is only logged).
func Keep(p *Process, name string, restart func(context.Context) (*Process, error), log *slog.Logger) *Kept {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	k := &Kept{name: name, log: log, restart: restart, ctx: ctx, cancel: cancel, cur: p}
	if restart != nil {
		k.wg.Add(1)
		go k.watch()
	}
	return k
}

// watch is the supervising goroutine; it ends at Close or when it gives up.
func (k *Kept) watch() {
	defer k.wg.Done()
	var restarts []time.Time
	backoff := firstBackoff
	for {
		k.mu.Lock()
		p := k.cur
		k.mu.Unlock()
		select {
		case <-k.ctx.Done():
			return
		case <-p.Done():
		}
		now := time.Now()
		for len(restarts) > 0 && now.Sub(restarts[0]) > restartWindow {
			restarts = restarts[1:]
		}
		if len(restarts) >= maxRestarts {
			k.log.Error(k.name+" keeps exiting; not restarting it again: the namespace has no network now",
				"restarts", len(restarts), "within", restartWindow)
			return
		}
		select {
		case <-k.ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
		restarts = append(restarts, time.Now())
		np, err := k.restart(k.ctx)
		if err != nil {
			if k.ctx.Err() != nil {
				return
			}
			k.log.Warn("restart "+k.name+" failed", "err", err)
			// Try again after the next backoff, against the same limit.
			continue
		}
		k.mu.Lock()
		if k.ctx.Err() != nil {
			k.mu.Unlock()
			np.Close()
			return
		}
		k.cur = np
		k.mu.Unlock()
		k.log.Warn(k.name+" restarted", "pid", np.PID())
	}
}

// PID is the current helper's process id.
func (k *Kept) PID() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.cur.PID()
}

// Close stops supervising, then stops and reaps the current helper.
func (k *Kept) Close() error {
	k.cancel()
	k.wg.Wait()
	k.mu.Lock()
	p := k.cur
	k.mu.Unlock()
	return p.Close()
}
