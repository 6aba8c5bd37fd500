package sigproxy

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"syscall"

	"github.com/unroot/unroot/internal/lograte"
)

// CatchAsync runs Catch in the background, where its round trips to Go's
// signal thread overlap whatever the caller starts next. Until the
// Forwarder arrives a signal has its default effect.
func CatchAsync() <-chan *Forwarder {
	c := make(chan *Forwarder, 1)
	go func() { c <- Catch() }()
	return c
}

// IsTerminating reports whether s is one of Terminating.
func IsTerminating(s os.Signal) bool { return slices.Contains(Terminating, s) }

// Relay delivers caught signals in two phases until ctx ends. Until a PID
// arrives on target, each signal goes to early, which returns whether to
// hold it for the target (typically a terminating signal aborts the
// start-up and is not held). Once the PID arrives, the held signals go to
// it first, then every signal caught from then on. A closed target ends
// Relay. The signals stay caught until Stop.
func (f *Forwarder) Relay(ctx context.Context, target <-chan int, early func(os.Signal) (hold bool)) {
	var held []os.Signal
	deliver := func(pid int) {
		for _, s := range held {
			_ = syscall.Kill(pid, s.(syscall.Signal))
		}
		f.Forward(ctx, pid)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case pid, ok := <-target:
			if ok {
				deliver(pid)
			}
			return
		case s := <-f.ch:
			// select picks at random among ready cases: when the target
			// is known already, the signal is the target's.
			select {
			case pid, ok := <-target:
				if !ok {
					return
				}
				held = append(held, s)
				deliver(pid)
				return
			default:
			}
			if early(s) {
				held = append(held, s)
			}
		}
	}
}

// StartupPolicy is the early function for Relay while a command starts:
// a terminating signal calls abort; any other signal is dropped, with a
// warning on log (rate-limited). Holding it for the command instead would
// deliver it right after the exec, before the program could install a
// handler: whether it killed the command or reached its handler would be
// chance. Dropping makes the outcome the same every time.
func StartupPolicy(log *slog.Logger, abort func(os.Signal)) func(os.Signal) bool {
	var warn lograte.Limiter
	return func(s os.Signal) bool {
		if IsTerminating(s) {
			abort(s)
			return false
		}
		warn.Log(context.Background(), log, slog.LevelWarn, fmt.Sprintf("signal %q dropped: it came before the command started; during start-up only SIGHUP, SIGINT, SIGQUIT and SIGTERM act (they abort it)", s), "signal", int(s.(syscall.Signal)))
		return false
	}
}
