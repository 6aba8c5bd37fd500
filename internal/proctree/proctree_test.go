package proctree

import (
	"fmt"
	"os"
	"os/exec"
	"slices"
	"testing"
)

// A shell's child and grandchild are both found, the child first.
func TestDescendants(t *testing.T) {
	cmd := exec.Command("sh", "-c", "sleep 30 & echo $!; wait")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	var sleeper int
	if _, err := fmt.Fscan(out, &sleeper); err != nil {
		t.Fatalf("read the sleeper's pid: %v", err)
	}
	got := Descendants(cmd.Process.Pid)
	if !slices.Contains(got, sleeper) {
		t.Errorf("Descendants(sh %d) = %v, want it to hold the sleeper %d", cmd.Process.Pid, got, sleeper)
	}
	if got := Descendants(sleeper); len(got) != 0 {
		t.Errorf("Descendants(sleeper) = %v, want none", got)
	}
	self := Descendants(0)
	if len(self) != 0 {
		t.Errorf("Descendants(0) = %v, want none (no such process)", self)
	}
	all := Descendants(os.Getpid())
	if i, j := slices.Index(all, cmd.Process.Pid), slices.Index(all, sleeper); i < 0 || j < i {
		t.Errorf("Descendants(self) = %v, want sh %d before its child %d", all, cmd.Process.Pid, sleeper)
	}
}
