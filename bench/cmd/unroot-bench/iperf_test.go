package main

import (
	"context"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/unroot/unroot/bench/internal/parse"
	"github.com/unroot/unroot/internal/testutil"
)

// An iperf3 server runs one test at a time and answers any other client
// "the server is busy running a test" (also for a moment after each test,
// or after hostServer's probe connection, on a loaded machine). retryBusy
// must wait that out: a real server, a real test in progress, and a second
// client that has to be refused at first and measured in the end.
func TestRetryBusyWaitsForTheServer(t *testing.T) {
	testutil.RequireTool(t, "iperf3", "iperf3")
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	p := strconv.Itoa(port)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	srv := exec.CommandContext(ctx, "iperf3", "-s", "-B", "127.0.0.1", "-p", p)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Wait()
	defer srv.Process.Kill()
	// established counts the server's connections (control and data).
	established := func() int {
		out, _ := exec.Command("ss", "-Htn", "state", "established", "sport = :"+p).Output()
		return len(strings.Fields(strings.TrimSpace(string(out)))) / 4
	}
	listening := func() bool {
		out, _ := exec.Command("ss", "-Hltn", "sport = :"+p).Output()
		return strings.TrimSpace(string(out)) != ""
	}
	for deadline := time.Now().Add(10 * time.Second); !listening(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("iperf3 -s did not listen within 10 s")
		}
	}
	// The first test runs until the second client has been refused once,
	// however slowly that client starts: then it is stopped, and the
	// server frees up for the second.
	first := exec.CommandContext(ctx, "iperf3", "-c", "127.0.0.1", "-p", p, "-t", "50", "-b", "10M")
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	defer first.Wait()
	for deadline := time.Now().Add(10 * time.Second); established() < 2; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the first test did not start within 10 s")
		}
	}
	tries := 0
	r, err := retryBusy(ctx, func() (parse.Iperf3, error) {
		if tries++; tries == 2 {
			first.Process.Signal(os.Interrupt)
		}
		out, _ := exec.CommandContext(ctx, "iperf3", "-c", "127.0.0.1", "-p", p, "-t", "1", "-b", "10M", "-J").Output()
		return parse.ParseIperf3(out)
	})
	if err != nil {
		t.Fatalf("second client after %d tries: %v", tries, err)
	}
	if tries < 2 {
		t.Errorf("the second client was never refused (%d try): the test did not overlap the first", tries)
	}
	if r.Goodput() <= 0 {
		t.Errorf("the second client measured nothing: %+v", r)
	}
	t.Logf("measured %.1f Mbit/s after %d tries", r.Goodput()/1e6, tries)
}
