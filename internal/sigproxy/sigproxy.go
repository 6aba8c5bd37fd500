// Package sigproxy forwards signals the launcher receives to another
// process: parent → namespace init, and namespace init → command. Every
// catchable signal is forwarded except SIGCHLD (about our own children),
// SIGPIPE (about our own writes) and SIGURG (Go's preemption signal).
package sigproxy

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

// Forwardable lists the signals Forward relays: 1..31 without SIGKILL,
// SIGSTOP, SIGCHLD, SIGPIPE and SIGURG, then the realtime signals 34..64
// (32 and 33 belong to the C library's threads).
func Forwardable() []os.Signal {
	var sigs []os.Signal
	for s := syscall.Signal(1); s <= 64; s++ {
		switch s {
		case syscall.SIGKILL, syscall.SIGSTOP, syscall.SIGCHLD, syscall.SIGPIPE, syscall.SIGURG, 32, 33:
			continue
		}
		sigs = append(sigs, s)
	}
	return sigs
}

// Forwarder relays signals to a target PID until Stop.
type Forwarder struct {
	ch   chan os.Signal
	done chan struct{}
}

// Catch starts catching every forwardable signal now, so none is lost
// before the target is known; they are queued until Forward.
func Catch() *Forwarder {
	f := &Forwarder{ch: make(chan os.Signal, 64), done: make(chan struct{})}
	signal.Notify(f.ch, Forwardable()...)
	return f
}

// C exposes the caught signals for callers that relay by hand.
func (f *Forwarder) C() <-chan os.Signal { return f.ch }

// Forward relays caught signals to pid until ctx ends, then stops catching
// and returns. kill may be nil (syscall.Kill).
func (f *Forwarder) Forward(ctx context.Context, pid int) {
	defer signal.Stop(f.ch)
	for {
		select {
		case <-ctx.Done():
			return
		case s := <-f.ch:
			// ESRCH means the target is already gone; its exit is reported elsewhere.
			_ = syscall.Kill(pid, s.(syscall.Signal))
		}
	}
}

// Stop stops catching without forwarding.
func (f *Forwarder) Stop() { signal.Stop(f.ch) }
