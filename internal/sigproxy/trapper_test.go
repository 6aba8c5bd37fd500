package sigproxy

import (
	"bufio"
	"os/exec"
	"testing"
)

// startTrapper starts sh with a USR1 trap that exits 7 and returns once the
// trap is installed: sh says so on stdout after the trap command has run. A
// signal sent before that would kill sh with USR1's default action instead.
func startTrapper(t *testing.T) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sh", "-c", "trap 'exit 7' USR1; echo trapped; while :; do sleep 0.01; done")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if line, err := bufio.NewReader(out).ReadString('\n'); line != "trapped\n" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("sh never said its trap was set: %q, %v", line, err)
	}
	return cmd
}
