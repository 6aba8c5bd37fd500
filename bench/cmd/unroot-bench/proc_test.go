package main

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

// A helper that daemonizes (its parent exits) must stay in the harness's
// tree, be seen as a launcher process, and die in killTree.
func TestKillTreeReachesDaemonizedGrandchild(t *testing.T) {
	if err := prctlSubreaper(); err != nil {
		t.Fatalf("become subreaper: %v", err)
	}
	// The shell starts a long sleep in the background and exits at once,
	// as pasta does when it daemonizes.
	if out, err := exec.Command("sh", "-c", "sleep 300 >/dev/null 2>&1 & exit 0").CombinedOutput(); err != nil {
		t.Fatalf("sh: %v: %s", err, out)
	}
	found := false
	for _, p := range descendants() {
		if p.Comm == "sleep" && !p.zombie {
			found = true
		}
	}
	if !found {
		t.Fatal("the orphaned sleep is not among the harness's descendants: subreaper not in effect")
	}
	if n := killTree(nil); n == 0 {
		t.Fatal("killTree killed nothing")
	}
	time.Sleep(50 * time.Millisecond)
	for _, p := range descendants() {
		if !p.zombie {
			t.Fatalf("still running after killTree: %s (%d)", p.Comm, p.pid)
		}
	}
}

func TestCPUSeconds(t *testing.T) {
	tests := []struct {
		a, b map[int]uint64
		want float64
	}{
		{map[int]uint64{1: 100}, map[int]uint64{1: 150}, 0.5},
		{map[int]uint64{}, map[int]uint64{7: 30}, 0.3},            // started during the run
		{map[int]uint64{1: 100, 2: 5}, map[int]uint64{1: 100}, 0}, // exited during the run
		{map[int]uint64{1: 100}, map[int]uint64{1: 90}, 0},        // pid reused: not negative
	}
	for _, tt := range tests {
		if got := cpuSeconds(tt.a, tt.b); got != tt.want {
			t.Errorf("cpuSeconds(%v, %v) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestPSSOfSelf(t *testing.T) {
	n, err := pss([]proc{{pid: os.Getpid()}})
	if err != nil {
		t.Fatal(err)
	}
	if n < 1<<20 {
		t.Fatalf("PSS of the test binary = %d bytes, want at least 1 MiB", n)
	}
}
