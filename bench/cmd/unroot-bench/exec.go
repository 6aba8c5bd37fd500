package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// prSetChildSubreaper is PR_SET_CHILD_SUBREAPER from <linux/prctl.h>; the
// syscall package lacks the name.
const prSetChildSubreaper = 36

func prctlSubreaper() error {
	if _, _, e := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0); e != 0 {
		return e
	}
	return nil
}

// owned holds the pids whose exec.Cmd will Wait for them, so that orphan
// reaping never steals their exit status.
var owned sync.Map

// lockedBuffer collects a process's output while the harness reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() > 1<<20 {
		return len(p), nil // a chatty server must not grow without bound
	}
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// proc is a started command whose exit the harness waits for.
type started struct {
	cmd            *exec.Cmd
	stdout, stderr *lockedBuffer
	done           chan struct{}
	err            error
}

func (s *started) exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// wait blocks until the process exits or the timeout passes.
func (s *started) wait(timeout time.Duration) (error, bool) {
	select {
	case <-s.done:
		return s.err, true
	case <-time.After(timeout):
		return nil, false
	}
}

// command builds a command; asUser runs it as the test user in its own
// process group with a clean environment.
func (h *harness) command(ctx context.Context, asUser bool, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	// Pdeathsig: if the harness itself is killed (SIGKILL, no cleanup),
	// what it started directly dies too, and the launchers take their
	// namespaces and helpers with them.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 3 * time.Second
	cmd.Dir = h.work
	if asUser {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(h.uid), Gid: uint32(h.gid)}
		cmd.Env = []string{
			"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
			"HOME=" + h.home,
			"USER=" + h.o.user,
			"LOGNAME=" + h.o.user,
			"XDG_RUNTIME_DIR=" + filepath.Join(h.work, "run"),
			"TMPDIR=/tmp",
			"LANG=C.UTF-8",
		}
	}
	return cmd
}

func (h *harness) start(cmd *exec.Cmd) (*started, error) {
	s := &started{cmd: cmd, stdout: &lockedBuffer{}, stderr: &lockedBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = s.stdout, s.stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	pid := cmd.Process.Pid
	owned.Store(pid, true)
	go func() {
		s.err = cmd.Wait()
		owned.Delete(pid)
		close(s.done)
	}()
	return s, nil
}

// runCmd runs a command to completion within timeout and returns its output.
func (h *harness) runCmd(ctx context.Context, timeout time.Duration, asUser bool, name string, args ...string) (string, string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	s, err := h.start(h.command(ctx, asUser, name, args...))
	if err != nil {
		return "", "", err
	}
	<-s.done
	if s.err != nil {
		if ctx.Err() == context.DeadlineExceeded {
			return s.stdout.String(), s.stderr.String(), fmt.Errorf("%s timed out after %v: %s", filepath.Base(name), timeout, tail(s.stderr.String(), 2))
		}
		return s.stdout.String(), s.stderr.String(), fmt.Errorf("%s %s: %v: %s", filepath.Base(name), strings.Join(short(args), " "), s.err, tail(s.stderr.String()+"\n"+s.stdout.String(), 2))
	}
	return s.stdout.String(), s.stderr.String(), nil
}

func short(args []string) []string {
	if len(args) > 6 {
		return append(append([]string(nil), args[:6]...), "…")
	}
	return args
}

// cleanup ends everything the last measurement started.
func (h *harness) cleanup() {
	keep := map[int]bool{}
	owned.Range(func(k, _ any) bool { keep[k.(int)] = true; return true })
	killTree(keep)
	// Give the Wait goroutines a moment to collect their children.
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		n := 0
		owned.Range(func(_, _ any) bool { n++; return true })
		if n == 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	reapOrphans(nil)
}

// freePort returns a TCP and UDP port on 127.0.0.1 that nothing uses now.
func freePort() (int, error) {
	for i := 0; i < 50; i++ {
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("find a free port: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp4", fmt.Sprintf("127.0.0.1:%d", port))
		l.Close()
		if err == nil {
			u.Close()
			return port, nil
		}
	}
	return 0, fmt.Errorf("find a free port: none free for both TCP and UDP after 50 tries")
}

// scratch makes a fresh directory owned by the test user.
func (h *harness) scratch() (string, error) {
	d := filepath.Join(h.work, fmt.Sprintf("s%d", h.next()))
	if err := os.Mkdir(d, 0o755); err != nil {
		return "", err
	}
	return d, os.Chown(d, h.uid, h.gid)
}

// session is a launcher running a program inside its namespaces.
type session struct {
	*started
	dir, state string
}

// launch starts peer p with flags and the shell script inner as the
// command, and waits until inner has created $DIR/ready and the launcher
// has written child_pid. inner may use the literal DIR, replaced by the
// session's scratch directory.
func (h *harness) launch(ctx context.Context, p *peer, flags []string, inner string) (*session, error) {
	dir, err := h.scratch()
	if err != nil {
		return nil, err
	}
	state := filepath.Join(dir, "state")
	args := append([]string{"--state-dir=" + state}, flags...)
	args = append(args, "--", "sh", "-c", strings.ReplaceAll(inner, "DIR", dir))
	st, err := h.start(h.command(ctx, true, p.bin, args...))
	if err != nil {
		return nil, err
	}
	s := &session{started: st, dir: dir, state: state}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if exists(filepath.Join(dir, "ready")) && exists(filepath.Join(state, "child_pid")) {
			return s, nil
		}
		if st.exited() {
			return nil, fmt.Errorf("%s exited before it was ready (%v): %s", p.id, st.err, tail(st.stderr.String()+"\n"+st.stdout.String(), 3))
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, fmt.Errorf("%s not ready after 30 s (no child_pid or server): %s", p.id, tail(st.stderr.String(), 3))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitFile waits for a file that the program inside creates.
func (s *session) waitFile(ctx context.Context, name string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for !exists(filepath.Join(s.dir, name)) {
		if s.exited() {
			return fmt.Errorf("launcher exited early (%v): %s", s.err, tail(s.stderr.String(), 3))
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s did not appear within %v", name, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// stop asks the launcher to end (it forwards SIGTERM to its command), then
// kills whatever is left.
func (s *session) stop(h *harness) {
	if !s.exited() {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		s.wait(2 * time.Second)
	}
	h.cleanup()
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// hostListening waits until something listens on 127.0.0.1:port (or all
// addresses) on the host. It does not connect: a probe connection would
// reach the server inside and count as a failed test there.
func (h *harness) hostListening(ctx context.Context, port int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		out, _, err := h.runCmd(ctx, 5*time.Second, false, "ss", "-Hltn", fmt.Sprintf("sport = :%d", port))
		if err == nil && strings.TrimSpace(out) != "" {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("nothing listens on host port %d after %v: the port driver did not forward it", port, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
