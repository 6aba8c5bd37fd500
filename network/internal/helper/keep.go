package helper

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/unroot/unroot/api"
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
// the rest of its life, and nobody notices. Each loss and restart is logged
// and shows in Health; when the helper is lost for good (it cannot be
// restarted, or keeps dying), Failed is closed so that the launcher can
// act on it (--on-network-failure).
type Kept struct {
	name    string
	log     *slog.Logger
	restart func(context.Context) (*Process, error)

	ctx    context.Context // alive until Close
	cancel context.CancelFunc
	wg     sync.WaitGroup
	failed chan struct{} // closed when the helper is lost for good

	mu       sync.Mutex
	cur      *Process
	state    string // api.HealthUp, HealthDegraded or HealthDown
	restarts int
	lastErr  string
	hooks    []func(context.Context) error
}

// Keep watches p and calls restart when it exits before Close. restart nil
// means the helper cannot be restarted: its loss is final.
func Keep(p *Process, name string, restart func(context.Context) (*Process, error), log *slog.Logger) *Kept {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	k := &Kept{name: name, log: log, restart: restart, ctx: ctx, cancel: cancel, cur: p, state: api.HealthUp, failed: make(chan struct{})}
	k.wg.Add(1)
	go k.watch()
	return k
}

// OnRestart adds a step that runs after each restart, before the helper
// counts as up again: republishing what the old process held (ports
// added through its API). If it fails the new process is stopped and the
// restart counts as failed.
func (k *Kept) OnRestart(f func(context.Context) error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.hooks = append(k.hooks, f)
}

// Health is the helper's state for /v1/info; Driver is left to the caller.
func (k *Kept) Health() api.NetworkHealth {
	k.mu.Lock()
	defer k.mu.Unlock()
	return api.NetworkHealth{State: k.state, Restarts: k.restarts, LastError: k.lastErr}
}

// Failed is closed when the helper is lost for good; nil (never closed) for
// a nil Kept, a driver not started yet.
func (k *Kept) Failed() <-chan struct{} {
	if k == nil {
		return nil
	}
	return k.failed
}

// HealthOf is network.Supervised's Health for a driver whose helper is k:
// up while k is nil (not started yet), else k's state.
func HealthOf(driver string, k *Kept) api.NetworkHealth {
	h := api.NetworkHealth{State: api.HealthUp}
	if k != nil {
		h = k.Health()
	}
	h.Driver = driver
	return h
}

func (k *Kept) set(state, lastErr string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.state = state
	if lastErr != "" {
		k.lastErr = lastErr
	}
}

// giveUp marks the helper lost for good.
func (k *Kept) giveUp(why string) {
	k.set(api.HealthDown, "")
	k.log.Error(k.name + " is lost: " + why + ": the namespace has no network now")
	close(k.failed)
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
		if k.ctx.Err() != nil {
			return
		}
		lost := fmt.Sprintf("%s exited (%s)", k.name, exitText(p.err))
		if out := p.Output(); out != "" {
			lost += ": " + out
		}
		k.set(api.HealthDegraded, lost)
		if k.restart == nil {
			k.giveUp(lost + "; it cannot be restarted")
			return
		}
		np := k.restartUntilGivenUp(&restarts, &backoff)
		if np == nil {
			return
		}
		k.mu.Lock()
		if k.ctx.Err() != nil {
			k.mu.Unlock()
			np.Close()
			return
		}
		k.cur = np
		k.state = api.HealthUp
		k.restarts++
		k.mu.Unlock()
		k.log.Warn(k.name+" restarted", "pid", np.PID())
	}
}

// restartUntilGivenUp restarts the helper, and runs the OnRestart steps,
// until that works (it returns the new process) or the restart limit or
// Close ends it (nil).
func (k *Kept) restartUntilGivenUp(restarts *[]time.Time, backoff *time.Duration) *Process {
	for {
		now := time.Now()
		for len(*restarts) > 0 && now.Sub((*restarts)[0]) > restartWindow {
			*restarts = (*restarts)[1:]
		}
		if len(*restarts) >= maxRestarts {
			k.giveUp(fmt.Sprintf("it keeps exiting: %d restarts within %v did not keep it running; not restarting it again", len(*restarts), restartWindow))
			return nil
		}
		select {
		case <-k.ctx.Done():
			return nil
		case <-time.After(*backoff):
		}
		*backoff = min(2*(*backoff), maxBackoff)
		*restarts = append(*restarts, time.Now())
		np, err := k.restart(k.ctx)
		if err == nil {
			if err = k.runHooks(); err != nil {
				np.Close()
			}
		}
		if err == nil {
			return np
		}
		if k.ctx.Err() != nil {
			return nil
		}
		k.set(api.HealthDegraded, "restart: "+err.Error())
		k.log.Warn("restart "+k.name+" failed", "err", err)
	}
}

func (k *Kept) runHooks() error {
	k.mu.Lock()
	hooks := k.hooks
	k.mu.Unlock()
	for _, h := range hooks {
		if err := h(k.ctx); err != nil {
			return err
		}
	}
	return nil
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
