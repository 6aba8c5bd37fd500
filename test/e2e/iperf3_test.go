package e2e

import (
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// waitListening waits until a TCP socket listens on port in the network
// namespace of pid (0: the test's own), as iperf3 -s does once it is ready
// for clients: iperf 3.12's client with -J exits 0 when it is refused.
func waitListening(t *testing.T, pid, port int, timeout time.Duration) {
	t.Helper()
	args := []string{"ss", "-Hltn", fmt.Sprintf("sport = :%d", port)}
	if pid != 0 {
		args = append([]string{"nsenter", "-t", strconv.Itoa(pid), "-n"}, args...)
	}
	deadline := time.Now().Add(timeout)
	for {
		out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
		if err == nil && strings.TrimSpace(string(out)) != "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listened on tcp port %d (netns of pid %d) within %v: %v %s", port, pid, timeout, err, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// iperf3Busy is what an iperf3 client (3.12, -J, exit status 0) says when
// the server still finishes the previous test: it takes a moment after
// each one, longer on a loaded machine. Nothing was measured then.
const iperf3Busy = "the server is busy running a test"

// iperf3Retry runs one iperf3 client run again, for up to 20 s, while the
// server answers that it is busy; run returns the client's output. Any
// other outcome is returned as it is, for the caller to judge.
func iperf3Retry(run func() (string, error)) (string, error) {
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, err := run()
		if !strings.Contains(out, iperf3Busy) || time.Now().After(deadline) {
			return out, err
		}
		time.Sleep(100 * time.Millisecond)
	}
}
