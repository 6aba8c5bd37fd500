package helper

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestHelpFlags(t *testing.T) {
	// Excerpts of slirp4netns 1.2.0 and pasta 2023_03_09 --help.
	help := `-c, --configure          bring up the interface
-e, --exit-fd=FD         specify the FD for terminating slirp4netns
--netns-type=TYPE 	 specify network namespace type ([path|pid], default=pid)
Failed to send 55 bytes to syslog
  --no-map-gw		Don't map gateway address to host
  --dns-forward ADDR	Forward DNS queries sent to ADDR
  -f, --foreground	Don't run in background
  use-not--this`
	got := HelpFlags(help)
	for _, f := range []string{"--configure", "--exit-fd", "--netns-type", "--no-map-gw", "--dns-forward", "--foreground"} {
		if !got[f] {
			t.Errorf("HelpFlags missed %s", f)
		}
	}
	for _, f := range []string{"--this", "--host-lo-to-ns-lo"} {
		if got[f] {
			t.Errorf("HelpFlags found %s, which is not an option", f)
		}
	}
}

func TestProbeHelp(t *testing.T) {
	// A fake helper: a shell script is overkill; sh -c ignores --help, so use
	// a binary that prints its usage for --help on every system.
	p := ProbeHelp("/bin/sh-does-not-exist")
	flags, err := p.Flags(context.Background())
	if err != nil || len(flags) != 0 {
		t.Errorf("probe of a missing binary = %v, %v, want no flags", flags, err)
	}
	if ProbeHelp("/bin/sh-does-not-exist") != p {
		t.Error("second ProbeHelp of the same path did not return the cached probe")
	}
}

// A helper whose --help hangs (here a wrapper script whose child keeps the
// output open) is reported as not answering, soon, and nothing of it stays.
func TestProbeHangs(t *testing.T) {
	defer func(d time.Duration) { ProbeTimeout = d }(ProbeTimeout)
	ProbeTimeout = 300 * time.Millisecond
	dir := t.TempDir()
	path := filepath.Join(dir, "slirp4netns")
	marker := "probe-hang-" + filepath.Base(dir)
	if err := os.WriteFile(path, []byte("#!/bin/sh\nexport M="+marker+"\nsleep 60\necho --never\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	flags, err := ProbeHelp(path).Flags(context.Background())
	took := time.Since(begin)
	if err == nil || !strings.Contains(err.Error(), "did not answer") {
		t.Fatalf("Flags = %v, %v, want an error saying the helper did not answer", flags, err)
	}
	if took > 3*time.Second {
		t.Errorf("the probe took %v to give up, want about ProbeTimeout (%v)", took, ProbeTimeout)
	}
	// The script and its sleep are gone: killed, though the sleep, reparented
	// when the script died, may take a moment to be scheduled and exit.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		left := markedProcs(marker)
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("processes of the hung probe are left: %v", left)
		}
	}
}

// markedProcs lists the live processes with M=marker in their environment (a
// zombie's environment reads empty).
func markedProcs(marker string) []string {
	var left []string
	procs, _ := filepath.Glob("/proc/[0-9]*/environ")
	for _, f := range procs {
		if b, err := os.ReadFile(f); err == nil && strings.Contains(string(b), "M="+marker) {
			left = append(left, f)
		}
	}
	return left
}

func FuzzHelpFlags(f *testing.F) {
	f.Add("-c, --configure  bring up\n--netns-type=TYPE")
	f.Add("--a--b -- --")
	f.Fuzz(func(t *testing.T, s string) {
		for k := range HelpFlags(s) {
			if !strings.HasPrefix(k, "--") || len(k) < 3 || !strings.Contains(s, k) {
				t.Errorf("HelpFlags(%q) returned %q", s, k)
			}
		}
	})
}

// The helper's output, whatever it is, becomes at most one line for errors.
func FuzzTail(f *testing.F) {
	f.Add([]byte("sent tapfd=7 for tap0\nreceived tapfd=7\n"), 3)
	f.Add([]byte("Failed to send 38 bytes to syslog\nNo routable interface\r\n"), 1)
	f.Fuzz(func(t *testing.T, b []byte, chunk int) {
		tl := &tail{log: slog.New(slog.DiscardHandler), name: "x"}
		if chunk <= 0 {
			chunk = 1
		}
		for len(b) > 0 {
			n := min(chunk, len(b))
			if w, err := tl.Write(b[:n]); w != n || err != nil {
				t.Fatalf("Write = %d, %v", w, err)
			}
			b = b[n:]
		}
		if s := tl.String(); strings.Contains(s, "\n") {
			t.Errorf("tail spans lines: %q", s)
		}
	})
}

// Output returns what the program printed, its status aside, and gives up
// on one that does not answer, with the whole process group.
func TestOutput(t *testing.T) {
	if got := Output("/bin/sh", 10*time.Second, "-c", "echo out; echo err >&2; exit 3"); got != "out\nerr\n" {
		t.Errorf("Output = %q, want both streams", got)
	}
	marker := "output-hang-" + filepath.Base(t.TempDir())
	begin := time.Now()
	got := Output("/bin/sh", 300*time.Millisecond, "-c", "echo started; M="+marker+" sleep 60; echo never")
	if took := time.Since(begin); got != "started\n" || took > 5*time.Second {
		t.Errorf("Output of a hung program = %q after %v, want what it printed, soon", got, took)
	}
	for deadline := time.Now().Add(5 * time.Second); len(markedProcs(marker)) > 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the hung program's sleep is left: %v", markedProcs(marker))
		}
	}
}
