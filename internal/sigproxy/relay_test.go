package sigproxy

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Before the target is known a terminating signal goes to early and is not
// held; another one is held and reaches the target once it is known.
func TestRelayHoldsUntilTarget(t *testing.T) {
	cmd := startTrapper(t)
	defer cmd.Process.Kill()
	f := <-CatchAsync()
	f.Ready()
	defer f.Stop()
	ctx, cancel := context.WithCancel(context.Background())
	target := make(chan int, 1)
	early := make(chan os.Signal, 4)
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.Relay(ctx, target, func(s os.Signal) bool {
			early <- s
			return !IsTerminating(s)
		})
	}()
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	syscall.Kill(os.Getpid(), syscall.SIGUSR1)
	// Signals sent together may come out in either order.
	want := map[os.Signal]bool{syscall.SIGHUP: true, syscall.SIGUSR1: true}
	for range 2 {
		select {
		case got := <-early:
			if !want[got] {
				t.Errorf("early got %v, want SIGHUP and SIGUSR1 once each", got)
			}
			delete(want, got)
		case <-time.After(5 * time.Second):
			t.Fatalf("early never got %v", want)
		}
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		t.Fatalf("target ended before it was named: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	target <- cmd.Process.Pid
	var err error
	select {
	case err = <-exited:
	case <-time.After(5 * time.Second):
		t.Fatal("held SIGUSR1 never reached the target")
	}
	cancel()
	<-done
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 7 {
		t.Errorf("target exit = %v, want status 7 from the held USR1", err)
	}
}

func TestIsTerminating(t *testing.T) {
	for s, want := range map[os.Signal]bool{syscall.SIGTERM: true, syscall.SIGINT: true, syscall.SIGHUP: true, syscall.SIGQUIT: true, syscall.SIGUSR1: false, syscall.SIGWINCH: false} {
		if got := IsTerminating(s); got != want {
			t.Errorf("IsTerminating(%v) = %v, want %v", s, got, want)
		}
	}
}

// Before the command runs a terminating signal aborts and anything else is
// dropped with one warning line per interval: nothing is held.
func TestStartupPolicy(t *testing.T) {
	var buf bytes.Buffer
	var aborted []os.Signal
	early := StartupPolicy(slog.New(slog.NewTextHandler(&buf, nil)), func(s os.Signal) { aborted = append(aborted, s) })
	for _, s := range []os.Signal{syscall.SIGUSR1, syscall.SIGUSR1, syscall.SIGWINCH, syscall.SIGTERM} {
		if early(s) {
			t.Errorf("%v held for the command, want dropped or aborting", s)
		}
	}
	if len(aborted) != 1 || aborted[0] != syscall.SIGTERM {
		t.Errorf("aborted by %v, want SIGTERM alone", aborted)
	}
	if n := strings.Count(buf.String(), "dropped"); n != 1 || !strings.Contains(buf.String(), "user defined signal 1") {
		t.Errorf("log %q: want one line naming the first dropped signal", buf.String())
	}
}
