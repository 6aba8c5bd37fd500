package testutil

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// Main is the TestMain of a package that owns loops and sockets: it runs
// the tests and then fails the run when goroutines or descriptors that did
// not exist before are still there after a grace period (those being torn
// down get it to finish). A package with a TestMain of its own (a re-exec
// helper) calls Main at its end.
func Main(m *testing.M) {
	fds := openFDs()
	gs := goroutines()
	code := m.Run()
	if code == 0 {
		if leak := waitLeaks(fds, gs, 15*time.Second); leak != "" {
			fmt.Fprintf(os.Stderr, "testutil.Main: the tests passed but left behind:\n%s", leak)
			code = 1
		}
	}
	os.Exit(code)
}

func waitLeaks(fds map[string]string, gs map[string]bool, grace time.Duration) string {
	deadline := time.Now().Add(grace)
	for {
		leak := leaks(fds, gs)
		if leak == "" || time.Now().After(deadline) {
			return leak
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func leaks(fds map[string]string, gs map[string]bool) string {
	var b strings.Builder
	for fd, target := range openFDs() {
		if fds[fd] != target && !runtimeFD(target) {
			fmt.Fprintf(&b, "  fd %s -> %s\n", fd, target)
		}
	}
	for id, stack := range goroutineStacks() {
		if !gs[id] && !background(stack) {
			fmt.Fprintf(&b, "  goroutine %s\n", strings.ReplaceAll(strings.TrimSpace(stack), "\n", "\n    "))
		}
	}
	return b.String()
}

// runtimeFD: descriptors the Go runtime opens on first use and keeps (the
// network poller's epoll and its wake-up eventfd).
func runtimeFD(target string) bool {
	return target == "anon_inode:[eventpoll]" || target == "anon_inode:[eventfd]"
}

// background: goroutines the runtime and the standard library start once
// and keep (signal delivery), and the test runner's own.
func background(stack string) bool {
	for _, s := range []string{"os/signal.signal_recv", "os/signal.loop", "runtime.ensureSigM", "testing.(*M).", "testing.tRunner", "runtime.goexit0"} {
		if strings.Contains(stack, s) {
			return true
		}
	}
	return false
}

func openFDs() map[string]string {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return nil
	}
	m := map[string]string{}
	for _, e := range ents {
		t, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err != nil {
			continue // the directory's own descriptor, closed by now
		}
		m[e.Name()] = t
	}
	return m
}

func goroutines() map[string]bool {
	m := map[string]bool{}
	for id := range goroutineStacks() {
		m[id] = true
	}
	return m
}

// goroutineStacks maps each goroutine's ID to its stack, without the
// calling goroutine.
func goroutineStacks() map[string]string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	m := map[string]string{}
	for i, g := range bytes.Split(buf, []byte("\n\n")) {
		if i == 0 {
			continue // this goroutine
		}
		f := strings.Fields(string(g))
		if len(f) >= 2 && f[0] == "goroutine" {
			m[f[1]] = string(g)
		}
	}
	return m
}
