// Package nstest runs a network driver the way unroot does, before the
// launcher exists to do it: as the unprivileged test user, against a real
// user+net namespace made with unshare(1), attached by PID or detached (a
// netns bind-mounted inside the holder's mount namespace).
//
// The test binary re-executes itself as the test user (Main dispatches), starts
// the namespace holder and the driver, and reports on stdout; the test (root)
// then looks into the namespace with nsenter and real tools.
package nstest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/unroot/unroot/network"
)

const envChild = "UNROOT_NSTEST_CHILD"

// Spec is what the child runs.
type Spec struct {
	Config network.Config
	// Options are the driver's own Options, as JSON for the child.
	Options  json.RawMessage
	Detached bool
}

// Report is what the child says once the driver has started.
type Report struct {
	HolderPID  int
	HelperPIDs []int
	NetNS      string // path to reach the namespace from the host (root)
	StateDir   string
	StartMS    float64
	Setup      network.Setup
	Info       json.RawMessage
	APISocket  string // the driver's APISocket(), if it has one
	Err        string
}

// Main is the TestMain of a driver package: in the re-executed child it runs
// the driver made by newDriver and never returns.
// newDriver gets the Spec's Config and its Options decoded into an O (the
// zero O without Options).
func Main[O any](m *testing.M, newDriver func(network.Config, O) (network.Driver, error)) {
	if os.Getenv(envChild) != "" {
		os.Exit(child(func(c network.Config, opts json.RawMessage) (network.Driver, error) {
			var o O
			if len(opts) > 0 {
				if err := json.Unmarshal(opts, &o); err != nil {
					return nil, err
				}
			}
			return newDriver(c, o)
		}))
	}
	code := m.Run()
	cleanup()
	os.Exit(code)
}

func child(newDriver func(network.Config, json.RawMessage) (network.Driver, error)) int {
	out := json.NewEncoder(os.Stdout)
	var spec Spec
	if err := json.Unmarshal([]byte(os.Getenv(envChild)), &spec); err != nil {
		out.Encode(Report{Err: err.Error()})
		return 1
	}
	fail := func(err error) int {
		out.Encode(Report{Err: err.Error()})
		return 1
	}
	state, err := os.MkdirTemp("", "nstest-state")
	if err != nil {
		return fail(err)
	}
	defer os.RemoveAll(state)
	var holder *exec.Cmd
	if spec.Detached {
		nsFile := filepath.Join(state, "netns")
		holder = exec.Command("unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
			`touch "$1" && unshare --net="$1" true && echo ready && exec sleep 600`, "sh", nsFile)
	} else {
		holder = exec.Command("unshare", "--user", "--map-root-user", "--net", "sh", "-c", "echo ready && exec sleep 600")
	}
	holder.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	holder.Stderr = os.Stderr
	hout, _ := holder.StdoutPipe()
	if err := holder.Start(); err != nil {
		return fail(err)
	}
	defer func() { holder.Process.Kill(); holder.Wait() }()
	if line, err := bufio.NewReader(hout).ReadString('\n'); err != nil || line != "ready\n" {
		return fail(fmt.Errorf("namespace holder: %q %v", line, err))
	}
	pid := holder.Process.Pid
	c := network.Child{PID: pid, UserNS: fmt.Sprintf("/proc/%d/ns/user", pid), StateDir: state, Detached: spec.Detached}
	if spec.Detached {
		c.NetNS = fmt.Sprintf("/proc/%d/root%s/netns", pid, state)
	} else {
		c.NetNS = fmt.Sprintf("/proc/%d/ns/net", pid)
	}
	before := children()
	d, err := newDriver(spec.Config, spec.Options)
	if err != nil {
		return fail(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	begin := time.Now()
	setup, err := d.Start(ctx, c)
	took := time.Since(begin)
	if err != nil {
		return fail(err)
	}
	info, _ := json.Marshal(d.Info())
	r := Report{HolderPID: pid, NetNS: c.NetNS, StateDir: state, StartMS: float64(took.Microseconds()) / 1000, Setup: setup, Info: info}
	if a, ok := d.(interface{ APISocket() string }); ok {
		r.APISocket = a.APISocket()
	}
	for p := range children() {
		if !before[p] && p != pid {
			r.HelperPIDs = append(r.HelperPIDs, p)
		}
	}
	out.Encode(r)
	// The test closes stdin to ask for Close.
	io.Copy(io.Discard, os.Stdin)
	if err := d.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "close:", err)
		return 1
	}
	fmt.Println("closed")
	return 0
}

func children() map[int]bool {
	m := map[int]bool{}
	tasks, _ := filepath.Glob("/proc/self/task/*/children")
	for _, t := range tasks {
		b, _ := os.ReadFile(t)
		for _, f := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(f); err == nil {
				m[n] = true
			}
		}
	}
	return m
}

// Session is a running child.
type Session struct {
	Report
	t     testing.TB
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader
	errb  *strings.Builder
}

// RequireUser returns the test user (UNROOT_TEST_USER, default unroot-test),
// skipping outside CI when the test cannot switch to it.
func RequireUser(t testing.TB) *user.User {
	t.Helper()
	ci := os.Getenv("CI") != ""
	if os.Getuid() != 0 {
		if ci {
			t.Fatal("CI must run these tests as root (scripts/test.sh does)")
		}
		t.Skip("skipping: needs root to run the driver as the unprivileged test user; run scripts/test.sh as root")
	}
	name := os.Getenv("UNROOT_TEST_USER")
	if name == "" {
		name = "unroot-test"
	}
	u, err := user.Lookup(name)
	if err != nil {
		if ci {
			t.Fatalf("test user %q: %v (scripts/test.sh creates it)", name, err)
		}
		t.Skipf("skipping: test user %q: %v (scripts/test.sh creates it)", name, err)
	}
	return u
}

// Start runs the driver as the test user per spec. The session is closed at
// the end of the test if the test did not close it.
func Start(t testing.TB, spec Spec) *Session {
	t.Helper()
	u := RequireUser(t)
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	bin := testBinary(t)
	env, _ := json.Marshal(spec)
	cmd := exec.Command(bin, "-test.run=^$")
	cmd.Env = []string{
		envChild + "=" + string(env),
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=" + u.HomeDir, "TMPDIR=/tmp",
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, Pdeathsig: syscall.SIGKILL}
	s := &Session{t: t, cmd: cmd, errb: &strings.Builder{}}
	cmd.Stderr = s.errb
	s.stdin, _ = cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	s.out = bufio.NewReader(stdout)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := s.out.ReadString('\n')
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("driver child: %v, stderr: %s", err, s.errb)
	}
	if err := json.Unmarshal([]byte(line), &s.Report); err != nil {
		t.Fatalf("driver child said %q: %v", line, err)
	}
	t.Cleanup(func() {
		s.Close()
		// A killed child cannot remove its own state directory.
		if s.StateDir != "" {
			os.RemoveAll(s.StateDir)
		}
	})
	return s
}

var binCopy string

// testBinary copies the test binary where the test user can run it.
func testBinary(t testing.TB) string {
	if binCopy != "" {
		return binCopy
	}
	dir, err := os.MkdirTemp("", "nstest-bin")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	self, _ := os.Executable()
	b, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, filepath.Base(self))
	if err := os.WriteFile(p, b, 0o755); err != nil {
		t.Fatal(err)
	}
	binCopy = p
	return p
}

// cleanup removes the copied test binary.
func cleanup() {
	if binCopy != "" {
		os.RemoveAll(filepath.Dir(binCopy))
	}
}

// Exec runs a command inside the namespace (as root, with nsenter) and
// returns its combined output and error.
func (s *Session) Exec(timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	a := append([]string{"--net=" + s.NetNS, "--"}, args...)
	out, err := exec.CommandContext(ctx, "nsenter", a...).CombinedOutput()
	return string(out), err
}

// Close asks the child to close the driver and waits for it to exit.
func (s *Session) Close() error {
	if s.stdin == nil {
		return nil
	}
	s.stdin.Close()
	s.stdin = nil
	done := make(chan error, 1)
	go func() {
		rest, _ := io.ReadAll(s.out)
		err := s.cmd.Wait()
		if err == nil && !strings.Contains(string(rest), "closed") {
			err = fmt.Errorf("child did not report closing: %q", rest)
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("driver child: %w: %s", err, s.errb)
		}
		return nil
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		return fmt.Errorf("driver child did not exit within 10s of Close: %s", s.errb)
	}
}

// Kill SIGKILLs the child (standing in for unroot) and waits for it.
func (s *Session) Kill() {
	s.cmd.Process.Kill()
	s.cmd.Wait()
	s.stdin = nil
}

// Alive tells whether pid is a running (not zombie) process.
func Alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && len(s) > i+2 && s[i+2] != 'Z'
}

// WaitGone waits up to timeout for every pid to be gone.
func WaitGone(pids []int, timeout time.Duration) []int {
	deadline := time.Now().Add(timeout)
	for {
		var left []int
		for _, p := range pids {
			if Alive(p) {
				left = append(left, p)
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Listen opens a TCP listener inside the namespace: the socket is created on
// a thread that has joined the namespace, and stays there after the thread
// goes back.
func (s *Session) Listen(t testing.TB, addr string) net.Listener {
	t.Helper()
	type res struct {
		l   net.Listener
		err error
	}
	ch := make(chan res, 1)
	go func() {
		runtime.LockOSThread()
		self, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			ch <- res{err: err}
			runtime.UnlockOSThread()
			return
		}
		defer self.Close()
		target, err := os.Open(s.NetNS)
		if err != nil {
			ch <- res{err: err}
			runtime.UnlockOSThread()
			return
		}
		defer target.Close()
		if err := setns(target); err != nil {
			ch <- res{err: err}
			runtime.UnlockOSThread()
			return
		}
		l, err := net.Listen("tcp", addr)
		if err := setns(self); err != nil {
			// The thread is in the wrong netns: leave it locked so it dies.
			ch <- res{err: fmt.Errorf("restore netns: %w", err)}
			return
		}
		runtime.UnlockOSThread()
		ch <- res{l, err}
	}()
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Cleanup(func() { r.l.Close() })
	return r.l
}

func setns(f *os.File) error {
	if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("setns %s: %w", f.Name(), err)
	}
	return nil
}
