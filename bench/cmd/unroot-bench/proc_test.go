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
	// sh may exit before its child has exec'd sleep (it is then still
	// named sh): wait for the name, not for sh.
	if !waitDescendants(func(ps []proc) bool { return liveNamed(ps, "sleep") > 0 }) {
		t.Fatal("the orphaned sleep is not among the harness's descendants: subreaper not in effect")
	}
	if n := killTree(nil); n == 0 {
		t.Fatal("killTree killed nothing")
	}
	// A killed process still has to be scheduled to die.
	if !waitDescendants(func(ps []proc) bool { return liveNamed(ps, "") == 0 }) {
		for _, p := range descendants() {
			if !p.zombie {
				t.Errorf("still running after killTree: %s (%d)", p.Comm, p.pid)
			}
		}
	}
}

// waitDescendants polls the harness's descendants until ok holds of them,
// for at most 10 s, and reports whether it did.
func waitDescendants(ok func([]proc) bool) bool {
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if ok(descendants()) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

// liveNamed counts the processes in ps that are not zombies and, unless
// comm is empty, are named comm.
func liveNamed(ps []proc, comm string) int {
	n := 0
	for _, p := range ps {
		if !p.zombie && (comm == "" || p.Comm == comm) {
			n++
		}
	}
	return n
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
