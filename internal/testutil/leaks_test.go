package testutil

import (
	"os"
	"strings"
	"testing"
	"time"
)

func TestLeaksFindsGoroutinesAndFDs(t *testing.T) {
	fds, gs := openFDs(), goroutines()
	if l := leaks(fds, gs); l != "" {
		t.Fatalf("leaks right after the snapshot: %s", l)
	}
	f, err := os.Open("/dev/null")
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	go func() { <-stop }()
	l := waitLeaks(fds, gs, 100*time.Millisecond)
	if l == "" || !strings.Contains(l, "/dev/null") || !strings.Contains(l, "TestLeaksFindsGoroutinesAndFDs") {
		t.Errorf("leaks = %q, want the fd and the goroutine", l)
	}
	f.Close()
	close(stop)
	if l := waitLeaks(fds, gs, 2*time.Second); l != "" {
		t.Errorf("leaks after cleaning up: %s", l)
	}
}

func TestMain(m *testing.M) { Main(m) }
