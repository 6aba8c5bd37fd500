package sigproxy

import (
	"context"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"testing"
	"time"
)

func TestForwardable(t *testing.T) {
	got := map[os.Signal]bool{}
	for _, s := range Forwardable() {
		got[s] = true
	}
	for _, s := range []syscall.Signal{syscall.SIGKILL, syscall.SIGSTOP, syscall.SIGCHLD, syscall.SIGPIPE, syscall.SIGURG} {
		if got[s] {
			t.Errorf("%v is forwarded, must not be", s)
		}
	}
	for _, s := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGWINCH, 34, 64} {
		if !got[s] {
			t.Errorf("%v is not forwarded", s)
		}
	}
}

// A real process receives what we forward: sh traps USR1 and exits 7.
func TestForwardToProcess(t *testing.T) {
	cmd := startTrapper(t)
	f := Catch()
	f.Ready()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { f.Forward(ctx, cmd.Process.Pid); close(done) }()
	syscall.Kill(os.Getpid(), syscall.SIGUSR1)
	err := cmd.Wait()
	cancel()
	<-done
	f.Stop()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 7 {
		t.Errorf("child exit = %v, want status 7 from the forwarded USR1", err)
	}
}

// Terminating signals are caught as soon as Catch returns, the rest once
// Ready returns; Stop releases them all.
func TestCatchReadyStop(t *testing.T) {
	f := Catch()
	syscall.Kill(os.Getpid(), syscall.SIGTERM)
	f.Ready()
	syscall.Kill(os.Getpid(), syscall.SIGUSR2)
	// Signals pending together come out in signal-number order, not in
	// the order they were sent.
	want := map[os.Signal]bool{syscall.SIGTERM: true, syscall.SIGUSR2: true}
	for range 2 {
		select {
		case got := <-f.ch:
			if !want[got] {
				t.Errorf("caught %v, want SIGTERM and SIGUSR2 once each", got)
			}
			delete(want, got)
		case <-time.After(5 * time.Second):
			t.Fatalf("%v not caught", want)
		}
	}
	f.Stop()
	if signal.Ignored(syscall.SIGUSR2) {
		t.Error("SIGUSR2 is ignored after Stop, want its default action back")
	}
}
