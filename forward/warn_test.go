package forward

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/unroot/unroot/internal/testutil"
)

// logTo returns a logger that writes text lines into a buffer.
func logTo() (*slog.Logger, *testutil.SyncBuffer) {
	var buf testutil.SyncBuffer
	return slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})), &buf
}

// warnings counts the warning lines in log that contain s.
func warnings(log, s string) int {
	n := 0
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, "level=WARN") && strings.Contains(line, s) {
			n++
		}
	}
	return n
}

// A forward to a host socket that is not there (yet) is made, with one
// warning that names the fix, in the log and in Add's answer; once a
// service listens there, it works.
func TestForwardMissingSocketWarns(t *testing.T) {
	log, buf := logTo()
	f := New(&hereSource{}, log)
	defer f.Close()
	ctx := context.Background()
	dir := t.TempDir()
	sock := filepath.Join(dir, "later.sock")
	nsPort := freePort(t, "tcp")
	st, err := f.Add(ctx, Spec{Proto: "tcp", HostPath: sock, NSPort: nsPort})
	if err != nil {
		t.Fatalf("a forward to a socket not there yet: %v; want it made", err)
	}
	want := fmt.Sprintf("no socket at %s yet: connections to port %d inside are reset until a service listens there; start the service, or fix the path", sock, nsPort)
	if !strings.Contains(st.Warning, want) {
		t.Errorf("Add's warning = %q, want %q", st.Warning, want)
	}
	if n := warnings(buf.String(), "no socket at"); n != 1 {
		t.Errorf("%d warnings of the missing socket, want 1:\n%s", n, buf)
	}
	if list, _ := f.List(ctx); len(list) != 1 || list[0].Warning != "" {
		t.Errorf("List = %+v: want the forward, with no warning (it is for the add only)", list)
	}
	// Until the service is up, connections are reset, and said so.
	if _, err := roundTrip(t, fmt.Sprintf("127.0.0.1:%d", nsPort), "early"); err == nil {
		t.Fatal("a forward to a missing socket answered")
	}
	ul, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	echoServer(t, ul, "unix:")
	if got, err := roundTrip(t, fmt.Sprintf("127.0.0.1:%d", nsPort), "late"); err != nil || got != "unix:late\n" {
		t.Errorf("once the socket is there: %q, %v; want unix:late", got, err)
	}

	// A path that is no socket, and one that is.
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o644)
	st, err = f.Add(ctx, Spec{Proto: "tcp", HostPath: file, NSPort: freePort(t, "tcp")})
	if err != nil || !strings.Contains(st.Warning, file+" is not a unix socket") || !strings.Contains(st.Warning, "give the path of the service's socket") {
		t.Errorf("a forward to a plain file: %+v, %v; want a warning that it is no socket", st, err)
	}
	st, err = f.Add(ctx, Spec{Proto: "tcp", HostPath: sock, NSPort: freePort(t, "tcp")})
	if err != nil || st.Warning != "" {
		t.Errorf("a forward to a live socket: %+v, %v; want no warning", st, err)
	}
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if strings.Contains(line, "level=WARN") && !strings.Contains(line, "forward ") {
			t.Errorf("warning without the forward it is about: %s", line)
		}
	}
}

// Traffic through a forward that cannot reach its host service is logged
// as a warning, not only at debug level, and rate-limited: a client
// retrying in a loop gives one line, not one per try.
func TestForwardFailuresWarnRateLimited(t *testing.T) {
	log, buf := logTo()
	f := New(&hereSource{}, log)
	// An interval no run of the loop below outlasts, however slow the
	// machine: exactly one line each.
	f.failEvery = time.Hour
	defer f.Close()
	ctx := context.Background()
	loop := netip.MustParseAddr("127.0.0.1")
	tcpNS, unixNS, udpNS := freePort(t, "tcp"), freePort(t, "tcp"), freePort(t, "udp")
	specs := []Spec{
		{Proto: "tcp", HostIP: loop, HostPort: testutil.ClosedPort(t), NSPort: tcpNS},
		{Proto: "tcp", HostPath: filepath.Join(t.TempDir(), "none.sock"), NSPort: unixNS},
		{Proto: "udp", HostIP: loop, HostPort: freePort(t, "udp"), NSPort: udpNS},
	}
	for _, sp := range specs {
		if _, err := f.Add(ctx, sp); err != nil {
			t.Fatal(err)
		}
	}
	const tries = 5
	for range tries {
		for _, p := range []int{tcpNS, unixNS} {
			if _, err := roundTrip(t, fmt.Sprintf("127.0.0.1:%d", p), "x"); err == nil {
				t.Fatalf("port %d: a forward to a service that is down answered", p)
			}
		}
		c, err := net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", udpNS))
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte("x"))
		c.Close()
	}
	// The warning is written by the forward's own goroutine, and the UDP
	// refusal comes back from the host socket a moment later.
	want := map[string]string{
		"connecting to the host service failed":       fmt.Sprintf("start the service at 127.0.0.1:%d, or fix the address", specs[0].HostPort),
		"connecting to the host socket failed":        "start the service that listens on " + specs[1].HostPath + ", or fix the path",
		"a datagram could not reach the host service": fmt.Sprintf("start the service at 127.0.0.1:%d, or fix the address", specs[2].HostPort),
	}
	deadline := time.Now().Add(5 * time.Second)
	for what, fix := range want {
		n := warnings(buf.String(), what)
		for n == 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
			n = warnings(buf.String(), what)
		}
		if n != 1 {
			t.Errorf("%q: %d warning lines for %d failures within the interval; want one:\n%s", what, n, tries, buf)
		}
		if warnings(buf.String(), fix) < 1 {
			t.Errorf("%q: no warning names the fix %q:\n%s", what, fix, buf)
		}
	}
}

// stalledHandler is a logger whose warnings block until stall is closed:
// a launcher whose stderr nobody reads.
type stalledHandler struct{ stall chan struct{} }

func (h stalledHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (h stalledHandler) Handle(context.Context, slog.Record) error {
	<-h.stall
	return nil
}
func (h stalledHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h stalledHandler) WithGroup(string) slog.Handler      { return h }

// A failure's warning never blocks the relay engine: with a logger that
// stalls, a refused connection is still reset and every other forward
// still relays.
func TestForwardFailureWarningDoesNotBlock(t *testing.T) {
	stall := make(chan struct{})
	f := New(&hereSource{}, slog.New(stalledHandler{stall}))
	defer f.Close()
	defer close(stall) // before Close, which writes what is queued
	ctx := context.Background()
	up, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	echoServer(t, up, "up:")
	loop := netip.MustParseAddr("127.0.0.1")
	downNS, upNS := freePort(t, "tcp"), freePort(t, "tcp")
	for _, sp := range []Spec{
		{Proto: "tcp", HostIP: loop, HostPort: testutil.ClosedPort(t), NSPort: downNS},
		{Proto: "tcp", HostIP: loop, HostPort: up.Addr().(*net.TCPAddr).Port, NSPort: upNS},
	} {
		if _, err := f.Add(ctx, sp); err != nil {
			t.Fatal(err)
		}
	}
	// Two failures: the first warning stalls in the logger, the second
	// is held by the rate limit; neither may hold the engine.
	for range 2 {
		if out, err := roundTrip(t, fmt.Sprintf("127.0.0.1:%d", downNS), "x"); err == nil {
			t.Fatalf("a forward to a service that is down answered %q", out)
		} else if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("a refused connection was not reset while the logger stalled: %v", err)
		}
	}
	if out, err := roundTrip(t, fmt.Sprintf("127.0.0.1:%d", upNS), "hi"); err != nil || out != "up:hi\n" {
		t.Errorf("another forward while the logger stalls: %q, %v; want up:hi", out, err)
	}
}
