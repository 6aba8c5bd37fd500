// Package sigproxy catches the signals a process receives and relays them
// to another: parent → namespace init, and namespace init → command. Until
// the target runs, Relay hands each signal to a policy (StartupPolicy: a
// terminating one aborts the start-up, another is dropped); from then on
// it forwards them all. Every catchable signal is forwarded except SIGCHLD
// (about our own children), SIGPIPE (about our own writes) and SIGURG (Go's
// preemption signal).
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

// Terminating lists the signals that end a start-up before the command
// runs (SIGHUP, SIGINT, SIGQUIT, SIGTERM).
var Terminating = []os.Signal{syscall.SIGHUP, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGTERM}

// Forwarder relays signals to a target PID until Stop.
type Forwarder struct {
	ch      chan os.Signal
	enabled chan struct{} // closed once every forwardable signal is caught
}

// Catch starts catching every forwardable signal, so none is lost before
// the target is known; they are queued until Forward. The terminating ones
// are caught when Catch returns, the others shortly after (Ready): Go
// enables each signal with a round trip to its signal-mask thread, which
// for all the forwardable ones together is too long to wait for on the
// start path.
func Catch() *Forwarder {
	f := &Forwarder{ch: make(chan os.Signal, 64), enabled: make(chan struct{})}
	signal.Notify(f.ch, Terminating...)
	// Ends after one Notify call; Stop and Forward wait for it.
	go func() {
		defer close(f.enabled)
		signal.Notify(f.ch, Forwardable()...)
	}()
	return f
}

// Ready waits until every forwardable signal is caught.
func (f *Forwarder) Ready() { <-f.enabled }

// Forward relays caught signals to pid until ctx ends; the signals stay
// caught until Stop.
func (f *Forwarder) Forward(ctx context.Context, pid int) {
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

// Stop stops catching. Like Catch it costs a round trip per signal, so
// callers on an exit path may run it in the background.
func (f *Forwarder) Stop() {
	f.Ready() // a Notify after Stop would catch again
	signal.Stop(f.ch)
}
