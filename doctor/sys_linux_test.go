package doctor

import (
	"context"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// A probe whose command has exited while another process still holds a
// copy of its output (as a sibling probe's child does from its fork to its
// exec; here a background sleep) is judged by its exit status: the output
// is a file, not a pipe that waits for its end and then fails the probe
// with "WaitDelay expired before I/O complete".
func TestRunInNSOutputHeldOpen(t *testing.T) {
	out, err := runInNS(context.Background(), 0, false, "sh", "-c", "sleep 5 & echo $!; echo done")
	first, _, _ := strings.Cut(out, "\n")
	if pid, perr := strconv.Atoi(first); perr == nil {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	if err != nil || !strings.HasSuffix(out, "\ndone") {
		t.Fatalf("runInNS = %q, %v; want the output and no error", out, err)
	}
}
