package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"slices"
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
// iperf3Refused is what it says when the server's listening socket is not
// there (yet, or again: iperf3 -s binds a new one after each test).
const (
	iperf3Busy    = "the server is busy running a test"
	iperf3Refused = "Connection refused"
)

// iperf3Retry runs one iperf3 client run again, for up to 20 s, while the
// server answers that it is busy or refuses the connection; run returns
// the client's output. Any other outcome is returned as it is, for the
// caller to judge.
func iperf3Retry(run func() (string, error)) (string, error) {
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, err := run()
		if !strings.Contains(out, iperf3Busy) && !strings.Contains(out, iperf3Refused) || time.Now().After(deadline) {
			return out, err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// iperf3Result is what the tests read of an iperf3 client's -J output.
type iperf3Result struct {
	End struct {
		Sum struct {
			BitsPerSecond float64 `json:"bits_per_second"`
			Packets       float64 `json:"packets"`
			LostPackets   float64 `json:"lost_packets"`
			LostPercent   float64 `json:"lost_percent"`
		} `json:"sum"`
		SumReceived struct {
			Bytes         float64 `json:"bytes"`
			BitsPerSecond float64 `json:"bits_per_second"`
		} `json:"sum_received"`
	} `json:"end"`
	// Error is set, with exit status 0 (iperf 3.12), when the test did
	// not run: refused, busy, reset.
	Error string `json:"error"`
}

// iperf3Through runs the iperf3 client on the host with args (-J is
// added), retried by iperf3Retry, and fails t unless data got through: the
// JSON's error is empty and the server received bytes (TCP) or some
// datagrams (UDP, -u). It logs the rate received; how fast is for bench/.
func iperf3Through(t *testing.T, args ...string) {
	t.Helper()
	iperf3Check(t, 0, func(args []string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		b, err := exec.CommandContext(ctx, "iperf3", args...).Output()
		return string(b), err
	}, args...)
}

// iperf3Check runs the iperf3 client args (-J is added) with run, retried
// by iperf3Retry, and fails t unless data got through: the JSON's error is
// empty and the server received bytes (TCP) or more than minUDP of the
// datagrams sent (UDP, -u; at least one).
func iperf3Check(t *testing.T, minUDP float64, run func(args []string) (string, error), args ...string) {
	t.Helper()
	args = append(args, "-J")
	udp := slices.Contains(args, "-u")
	out, err := iperf3Retry(func() (string, error) { return run(args) })
	var r iperf3Result
	if jerr := json.Unmarshal([]byte(out), &r); jerr != nil {
		t.Errorf("iperf3 %v: %v; printed no JSON (%v): %.2000s", args, err, jerr, out)
		return
	}
	sum := r.End.Sum
	switch {
	case err != nil || r.Error != "":
		t.Errorf("iperf3 %v: %v: error %q: %.2000s", args, err, r.Error, out)
	case udp && (sum.Packets-sum.LostPackets <= 0 || sum.Packets-sum.LostPackets < minUDP*sum.Packets):
		t.Errorf("iperf3 %v: none of %v datagrams reached the server: %.2000s", args, sum.Packets, out)
	case !udp && r.End.SumReceived.Bytes <= 0:
		t.Errorf("iperf3 %v: the server received nothing: %.2000s", args, out)
	case udp:
		t.Logf("iperf3 %v: %.0f of %.0f datagrams received, %.2f Gbit/s", args, sum.Packets-sum.LostPackets, sum.Packets, sum.BitsPerSecond*(100-sum.LostPercent)/100/1e9)
	default:
		t.Logf("iperf3 %v: %.2f Gbit/s received", args, r.End.SumReceived.BitsPerSecond/1e9)
	}
}
