package helper

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/unroot/unroot/internal/testutil"
)

// TestMain doubles as a parent process for the SIGKILL test: with
// HELPER_TEST_PARENT set, it starts a helper, prints its pid and waits to be killed.
func TestMain(m *testing.M) {
	if os.Getenv("HELPER_TEST_PARENT") != "" {
		p, err := Start(context.Background(), Options{Name: "sh", Path: "/bin/sh", Args: []string{"-c", "echo >&3; exec sleep 60"}})
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		fmt.Println(p.PID())
		time.Sleep(time.Minute)
		os.Exit(0)
	}
	testutil.Main(m) // fails on leftover goroutines and descriptors
}

func alive(pid int) bool {
	// A zombie still answers kill(0); look at its state instead.
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && len(s) > i+2 && s[i+2] != 'Z'
}

func TestStartReadyAndClose(t *testing.T) {
	p, err := Start(context.Background(), Options{Name: "sh", Path: "/bin/sh", Args: []string{"-c", "echo starting; echo 1 >&3; exec sleep 60"}})
	if err != nil {
		t.Fatal(err)
	}
	if !alive(p.PID()) {
		t.Fatalf("helper %d not running after Start", p.PID())
	}
	// Its own process group: a terminal's Ctrl-C goes to unroot and the
	// command, and must not take the network down under them.
	if pgid, err := syscall.Getpgid(p.PID()); err != nil || pgid != p.PID() {
		t.Errorf("helper process group = %d, %v, want its own (%d)", pgid, err, p.PID())
	}
	start := time.Now()
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Close took %v", d)
	}
	if alive(p.PID()) {
		t.Errorf("helper %d still running after Close", p.PID())
	}
	select {
	case <-p.Done():
	default:
		t.Error("Done not closed after Close")
	}
	_ = p.Close() // idempotent
}

func TestExitFD(t *testing.T) {
	// The helper exits by itself once unroot's end of the exit pipe closes.
	// Close's grace before SIGTERM is raised so that a slow machine cannot
	// turn the clean exit into a signalled one; a helper that never sees EOF
	// is still signalled (a minute on) and fails the test.
	defer func(d time.Duration) { exitFDGrace = d }(exitFDGrace)
	exitFDGrace = time.Minute
	p, err := Start(context.Background(), Options{Name: "sh", Path: "/bin/sh", ExitFD: true,
		Args: []string{"-c", "echo >&3; read x <&4; echo bye"}})
	if err != nil {
		t.Fatal(err)
	}
	p.Close()
	if p.err != nil || !strings.Contains(p.Output(), "bye") {
		t.Errorf("exit %v, output %q: the helper did not exit through its exit fd", p.err, p.Output())
	}
}

func TestStartHelperDies(t *testing.T) {
	_, err := Start(context.Background(), Options{Name: "fakehelper", Path: "/bin/sh",
		Args: []string{"-c", "echo 'Failed to send 38 bytes to syslog' >&2; echo 'cannot open /dev/net/tun' >&2; exit 3"},
		Hint: func(out string) string {
			if strings.Contains(out, "/dev/net/tun") {
				return "chmod 0666 /dev/net/tun"
			}
			return ""
		}})
	if err == nil {
		t.Fatal("Start succeeded, want error")
	}
	want := "start fakehelper: exited (exit status 3) before it was ready: cannot open /dev/net/tun; fix: chmod 0666 /dev/net/tun"
	if err.Error() != want {
		t.Errorf("error = %q\nwant    %q", err, want)
	}
}

func TestStartClosesReadyFDWithoutWriting(t *testing.T) {
	_, err := Start(context.Background(), Options{Name: "sh", Path: "/bin/sh", Args: []string{"-c", "exec 3>&-; exec sleep 60"}})
	if err == nil || !strings.Contains(err.Error(), "closed its ready fd") {
		t.Fatalf("error = %v, want one about the ready fd", err)
	}
}

// expiring is a context whose deadline passes when expire is called: a test
// can let it pass once the helper has got as far as it means to.
type expiring struct {
	context.Context
	done chan struct{}
	once sync.Once
}

func newExpiring() *expiring {
	return &expiring{Context: context.Background(), done: make(chan struct{})}
}

func (e *expiring) expire()               { e.once.Do(func() { close(e.done) }) }
func (e *expiring) Done() <-chan struct{} { return e.done }
func (e *expiring) Err() error {
	select {
	case <-e.done:
		return context.DeadlineExceeded
	default:
		return nil
	}
}

func TestStartContextEnds(t *testing.T) {
	// The deadline passes once the helper has written its stderr line (it
	// then creates a file), however long it took to get that far.
	said := filepath.Join(t.TempDir(), "said")
	ctx := newExpiring()
	expired := make(chan time.Time, 1)
	go func() {
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			if _, err := os.Stat(said); err == nil {
				break
			}
		}
		expired <- time.Now()
		ctx.expire()
	}()
	_, err := Start(ctx, Options{Name: "sh", Path: "/bin/sh", Args: []string{"-c", "echo waiting >&2; : >" + said + "; exec sleep 60"}})
	at := <-expired
	if err == nil || !strings.Contains(err.Error(), "was not ready before context deadline exceeded: waiting") {
		t.Fatalf("error = %v", err)
	}
	if d := time.Since(at); d > 2*time.Second {
		t.Errorf("Start took %v after the deadline", d)
	}
}

func TestStartMissingBinary(t *testing.T) {
	_, err := Start(context.Background(), Options{Name: "nope", Path: "/nonexistent/nope"})
	if err == nil || !strings.HasPrefix(err.Error(), "start nope: ") {
		t.Fatalf("error = %v", err)
	}
}

// SIGKILL of the process that started the helper must take the helper down.
func TestParentKilled(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "HELPER_TEST_PARENT=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("parent said %q", line)
	}
	if !alive(pid) {
		t.Fatalf("helper %d not running", pid)
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
	deadline := time.Now().Add(2 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("helper %d still running 2s after its parent was killed", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A helper that dies after it was ready is reported once; one that never got
// ready is only Start's error.
func TestUnexpectedExitWarning(t *testing.T) {
	var buf testutil.SyncBuffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	_, err := Start(context.Background(), Options{Name: "early", Path: "/bin/sh", Args: []string{"-c", "exit 2"}, Logger: log})
	if err == nil {
		t.Fatal("Start of a helper that exits: want error")
	}
	p, err := Start(context.Background(), Options{Name: "late", Path: "/bin/sh", Args: []string{"-c", "echo >&3; sleep 0.2; echo dying >&2; exit 3"}, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	<-p.Done()
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline) && !strings.Contains(buf.String(), "late exited"); {
		time.Sleep(5 * time.Millisecond)
	}
	p.Close()
	out := buf.String()
	if strings.Contains(out, "early exited unexpectedly") {
		t.Errorf("warned about a helper that never started: %s", out)
	}
	if !strings.Contains(out, "late exited unexpectedly") || !strings.Contains(out, "dying") {
		t.Errorf("no warning for a helper lost after start: %s", out)
	}
}

func sleeper(ctx context.Context) (*Process, error) {
	return Start(ctx, Options{Name: "sleeper", Path: "/bin/sh", Args: []string{"-c", "echo >&3; exec sleep 60"}})
}

// A kept helper that is killed comes back; Close stops whichever runs.
func TestKeepRestarts(t *testing.T) {
	var buf testutil.SyncBuffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	p, err := sleeper(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	k := Keep(p, "sleeper", sleeper, log)
	first := k.PID()
	syscall.Kill(first, syscall.SIGKILL)
	deadline := time.Now().Add(5 * time.Second)
	for k.PID() == first || !alive(k.PID()) {
		if time.Now().After(deadline) {
			t.Fatalf("not restarted within 5s: %s", buf.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	second := k.PID()
	if err := k.Close(); err != nil {
		t.Fatal(err)
	}
	if alive(second) {
		t.Errorf("restarted helper %d still running after Close", second)
	}
	if !strings.Contains(buf.String(), "sleeper restarted") {
		t.Errorf("restart not logged: %s", buf.String())
	}
}

// A helper that keeps dying is given up on, with an error logged.
func TestKeepGivesUp(t *testing.T) {
	var buf testutil.SyncBuffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	dying := func(ctx context.Context) (*Process, error) {
		return Start(ctx, Options{Name: "dying", Path: "/bin/sh", Args: []string{"-c", "echo >&3; exit 1"}})
	}
	p, err := dying(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	k := Keep(p, "dying", dying, log)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(buf.String(), "keeps exiting") {
		if time.Now().After(deadline) {
			t.Fatalf("did not give up within 10s: %s", buf.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	// A restart whose helper dies before it is ready counts as an attempt too.
	if n := strings.Count(buf.String(), "dying restarted") + strings.Count(buf.String(), "restart dying failed"); n != maxRestarts {
		t.Errorf("%d restart attempts, want %d: %s", n, maxRestarts, buf.String())
	}
	k.Close()
}

// Without a restart function, Keep only hands Close through.
func TestKeepWithoutRestart(t *testing.T) {
	p, err := sleeper(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	k := Keep(p, "sleeper", nil, nil)
	k.Close()
	if alive(p.PID()) {
		t.Errorf("helper %d still running after Close", p.PID())
	}
}

// Health follows the helper: up, degraded while it is restarted, up again
// with the restart counted and the loss kept as the last error.
func TestKeepHealth(t *testing.T) {
	p, err := sleeper(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	k := Keep(p, "sleeper", sleeper, nil)
	defer k.Close()
	if h := k.Health(); h.State != "up" || h.Restarts != 0 || h.LastError != "" {
		t.Fatalf("fresh Health = %+v", h)
	}
	first := k.PID()
	syscall.Kill(first, syscall.SIGKILL)
	deadline := time.Now().Add(5 * time.Second)
	for k.Health().Restarts != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("not restarted within 5s: %+v", k.Health())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if h := k.Health(); h.State != "up" || !strings.Contains(h.LastError, "sleeper exited (signal: killed)") {
		t.Errorf("Health after a restart = %+v, want up with the loss as last error", h)
	}
	select {
	case <-k.Failed():
		t.Error("Failed closed after a successful restart")
	default:
	}
}

// A helper that cannot be restarted is lost at its first exit: Failed
// closes and Health says down.
func TestKeepWithoutRestartFails(t *testing.T) {
	p, err := sleeper(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	k := Keep(p, "sleeper", nil, nil)
	defer k.Close()
	syscall.Kill(p.PID(), syscall.SIGKILL)
	select {
	case <-k.Failed():
	case <-time.After(5 * time.Second):
		t.Fatal("Failed not closed after the helper died")
	}
	if h := k.Health(); h.State != "down" || !strings.Contains(h.LastError, "exited") {
		t.Errorf("Health = %+v, want down with the exit", h)
	}
}

// A restart whose OnRestart step fails is a failed restart: the new
// process is stopped, and after the limit the helper is lost.
func TestKeepRestartHookFails(t *testing.T) {
	p, err := sleeper(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var started []int
	restart := func(ctx context.Context) (*Process, error) {
		np, err := sleeper(ctx)
		if err == nil {
			mu.Lock()
			started = append(started, np.PID())
			mu.Unlock()
		}
		return np, err
	}
	k := Keep(p, "sleeper", restart, nil)
	defer k.Close()
	k.OnRestart(func(context.Context) error { return fmt.Errorf("republish port 8080: address in use") })
	syscall.Kill(p.PID(), syscall.SIGKILL)
	select {
	case <-k.Failed():
	case <-time.After(20 * time.Second):
		t.Fatalf("not given up: %+v", k.Health())
	}
	if h := k.Health(); h.State != "down" || !strings.Contains(h.LastError, "republish port 8080") {
		t.Errorf("Health = %+v, want down with the hook's error", h)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(started) != maxRestarts {
		t.Errorf("%d restarts, want %d", len(started), maxRestarts)
	}
	for _, pid := range started {
		if alive(pid) {
			t.Errorf("helper %d of a failed restart still runs", pid)
		}
	}
}

// A driver asks for its helper's health and failure before Start too.
func TestHealthOfNotStarted(t *testing.T) {
	var k *Kept
	if h := HealthOf("pasta", k); h.State != "up" || h.Driver != "pasta" || h.Restarts != 0 {
		t.Errorf("HealthOf(nil) = %+v, want up, driver pasta", h)
	}
	if c := k.Failed(); c != nil {
		t.Errorf("(*Kept)(nil).Failed() = %v, want nil", c)
	}
}
