// Package helper runs the external process behind a network driver
// (slirp4netns, pasta) so that it can never outlive unroot.
//
// Three things tie the helper to unroot: Pdeathsig from an OS thread that
// stays locked until the helper exits (Go may otherwise retire the thread that
// forked it, which fires Pdeathsig early), an optional exit pipe whose write
// end only unroot holds (the helper quits on EOF even if Pdeathsig was lost),
// and Close, which stops and reaps it. The helper gets its own process group so
// that a terminal's Ctrl-C reaches the command, not the network under it.
//
// Readiness is a byte on a pipe the helper gets as fd 3. While waiting, Start
// also notices the helper dying and returns its stderr in the error.
package helper

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/unroot/unroot/internal/operr"
)

// Fixed descriptor numbers in the helper: ExtraFiles start at 3.
const (
	ReadyFD = 3
	ExitFD  = 4
)

// DefaultReadyTimeout bounds Start when ctx has no deadline, so a helper that
// never signals readiness cannot hang unroot.
const DefaultReadyTimeout = 10 * time.Second

// Options says how to run a helper.
type Options struct {
	// Name is used in errors and logs ("slirp4netns").
	Name string
	Path string
	Args []string
	// ExitFD passes fd 4, a pipe whose write end unroot holds until Close.
	ExitFD bool
	// Hint, if set, is called with the helper's stderr when it fails to start
	// and may return a fix to append to the error ("" for none).
	Hint   func(stderr string) string
	Logger *slog.Logger
}

// Process is a running helper. Its methods are safe for concurrent use.
type Process struct {
	name    string
	pid     int
	log     *slog.Logger
	out     *tail
	exitW   *os.File // nil without ExitFD
	done    chan struct{}
	err     error // valid after done is closed
	closed  chan struct{}
	once    sync.Once
	ready   atomic.Bool   // Start succeeded
	started chan struct{} // closed when Start has decided
}

// Start runs the helper and returns once it has written to its ready fd.
// If the helper exits first, ctx ends or the ready timeout passes, the helper
// is killed and reaped and the error carries its last stderr lines.
func Start(ctx context.Context, o Options) (*Process, error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	pp, err := newPipes(o)
	if err != nil {
		return nil, err
	}
	defer pp.readyR.Close()
	p := &Process{
		name:    o.Name,
		log:     log,
		out:     &tail{log: log, name: o.Name},
		exitW:   pp.exitW,
		done:    make(chan struct{}),
		closed:  make(chan struct{}),
		started: make(chan struct{}),
	}
	err = p.fork(helperCmd(o, p.out, pp.files()), o.Name)
	pp.closeChildEnds()
	if err != nil {
		if pp.exitW != nil {
			pp.exitW.Close()
		}
		return nil, fmt.Errorf("start %s: %w", o.Name, err)
	}
	// Closed on return: the owner goroutine reports a lost helper only
	// once Start has decided it was ready.
	defer close(p.started)
	why, ok := p.awaitReady(ctx, watchReady(pp.readyR))
	if ok {
		return p, nil
	}
	p.Close()
	return nil, startError(o, why, p.out.String())
}

// pipes are the helper's ready pipe and, with Options.ExitFD, its exit
// pipe; the helper gets readyW (fd 3) and exitR (fd 4).
type pipes struct {
	readyR, readyW, exitR, exitW *os.File
}

func newPipes(o Options) (pipes, error) {
	var pp pipes
	var err error
	pp.readyR, pp.readyW, err = os.Pipe()
	if err != nil {
		return pipes{}, fmt.Errorf("start %s: ready pipe: %w", o.Name, err)
	}
	if o.ExitFD {
		pp.exitR, pp.exitW, err = os.Pipe()
		if err != nil {
			pp.readyR.Close()
			pp.readyW.Close()
			return pipes{}, fmt.Errorf("start %s: exit pipe: %w", o.Name, err)
		}
	}
	return pp, nil
}

// files are the helper's ExtraFiles: ReadyFD, then ExitFD if any.
func (pp pipes) files() []*os.File {
	if pp.exitR == nil {
		return []*os.File{pp.readyW}
	}
	return []*os.File{pp.readyW, pp.exitR}
}

// closeChildEnds closes unroot's copies of the ends the helper holds, so
// that the ready pipe reads EOF once the helper is gone.
func (pp pipes) closeChildEnds() {
	pp.readyW.Close()
	if pp.exitR != nil {
		pp.exitR.Close()
	}
}

// helperCmd is the helper's command: output to out, its own process group,
// killed if the thread that forked it ends.
func helperCmd(o Options, out io.Writer, files []*os.File) *exec.Cmd {
	return &exec.Cmd{
		Path:       o.Path,
		Args:       append([]string{o.Path}, o.Args...),
		Stdout:     out,
		Stderr:     out,
		ExtraFiles: files,
		SysProcAttr: &syscall.SysProcAttr{
			Pdeathsig: syscall.SIGKILL,
			Setpgid:   true,
		},
		// pasta's short-lived namespace helpers could hold stdout; never let
		// Wait block on them.
		WaitDelay: time.Second,
	}
}

// fork starts cmd from a goroutine that owns the helper: it forks it from
// a locked thread, keeps that thread (and so Pdeathsig) alive while the
// helper runs, reaps it and closes done. It ends when the helper exits.
// fork returns once the helper is forked, or why it could not be.
func (p *Process) fork(cmd *exec.Cmd, name string) error {
	forked := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			forked <- err
			return
		}
		forked <- nil
		werr := cmd.Wait()
		p.err = werr
		close(p.done)
		// Only a helper that was serving can be lost; a failed start is
		// reported by Start's error.
		<-p.started
		select {
		case <-p.closed:
		default:
			if p.ready.Load() {
				p.log.Warn(name+" exited unexpectedly", "err", werr, "output", p.out.String())
			}
		}
	}()
	if err := <-forked; err != nil {
		return err
	}
	p.pid = cmd.Process.Pid
	return nil
}

// watchReady reads the ready pipe and sends nil once the helper writes to
// it, or why it never will. The goroutine ends when the helper writes its
// byte or exits (EOF once its copy of the write end is gone), or when
// Start returns and closes readyR.
func watchReady(readyR *os.File) <-chan error {
	ready := make(chan error, 1)
	go func() {
		var b [64]byte
		n, err := readyR.Read(b[:])
		if n > 0 {
			ready <- nil
			return
		}
		if err == nil || errors.Is(err, io.EOF) {
			err = errors.New("closed its ready fd without writing to it")
		}
		ready <- err
	}()
	return ready
}

// awaitReady waits for the helper's ready byte, its exit, the end of ctx
// or DefaultReadyTimeout (when ctx has no deadline). It reports true once
// the helper is ready, else why it is not.
func (p *Process) awaitReady(ctx context.Context, ready <-chan error) (why string, ok bool) {
	timeout := time.NewTimer(DefaultReadyTimeout)
	defer timeout.Stop()
	if _, hasDeadline := ctx.Deadline(); hasDeadline {
		timeout.Stop()
	}
	select {
	case err := <-ready:
		if err == nil {
			p.ready.Store(true)
			return "", true
		}
		// EOF on the ready pipe usually means the helper died; give Wait a
		// moment so the error reports its status.
		select {
		case <-p.done:
			return "exited (" + exitText(p.err) + ") before it was ready", false
		case <-time.After(500 * time.Millisecond):
			return err.Error(), false
		}
	case <-p.done:
		// It may have written its byte just before it exited, and the
		// reader not have passed it on yet: the reader decides (its read
		// ends promptly, the write end having closed with the helper).
		select {
		case err := <-ready:
			if err == nil {
				p.ready.Store(true)
				return "", true
			}
		case <-time.After(500 * time.Millisecond):
		}
		return "exited (" + exitText(p.err) + ") before it was ready", false
	case <-ctx.Done():
		return "was not ready before " + ctx.Err().Error(), false
	case <-timeout.C:
		return fmt.Sprintf("was not ready within %v", DefaultReadyTimeout), false
	}
}

// startError is Start's error for a helper that was not ready: why, its
// last output, and the fix o.Hint finds in that output.
func startError(o Options, why, out string) error {
	msg := fmt.Sprintf("start %s: %s", o.Name, why)
	if out != "" {
		msg += ": " + out
	}
	if o.Hint != nil {
		if h := o.Hint(out); h != "" {
			// The hint is the device's own state (see TunHint): the
			// helper could not open it.
			return operr.Wrap(operr.Tun, "/dev/net/tun", errors.New(msg+"; fix: "+h))
		}
	}
	return errors.New(msg)
}

// exitFDGrace is how long Close waits for a helper with an exit fd to see
// EOF on it and exit before it sends SIGTERM. Tests raise it so that a
// loaded machine cannot turn a clean exit into a signalled one.
var exitFDGrace = 200 * time.Millisecond

// PID is the helper's process id.
func (p *Process) PID() int { return p.pid }

// Done is closed when the helper has exited and been reaped.
func (p *Process) Done() <-chan struct{} { return p.done }

// Output is the helper's recent output, one line.
func (p *Process) Output() string { return p.out.String() }

// Close stops the helper (exit pipe, then SIGTERM, then SIGKILL) and waits
// until it has been reaped. It is idempotent.
func (p *Process) Close() error {
	p.once.Do(func() {
		begin := time.Now()
		defer func() { p.log.Debug(p.name+" stopped", "took", time.Since(begin)) }()
		close(p.closed)
		if p.exitW != nil {
			p.exitW.Close()
			if wait(p.done, exitFDGrace) {
				return
			}
		}
		_ = syscall.Kill(p.pid, syscall.SIGTERM)
		if wait(p.done, time.Second) {
			return
		}
		_ = syscall.Kill(p.pid, syscall.SIGKILL)
		<-p.done
	})
	<-p.done
	return nil
}

func wait(done <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

func exitText(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// tail keeps the last lines a helper printed, for errors, and logs each line
// at debug level.
type tail struct {
	mu      sync.Mutex
	log     *slog.Logger
	name    string
	partial []byte
	lines   []string
}

const tailLines = 8

func (t *tail) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.partial = append(t.partial, b...)
	for {
		i := bytes.IndexByte(t.partial, '\n')
		if i < 0 {
			break
		}
		t.add(string(t.partial[:i]))
		t.partial = t.partial[i+1:]
	}
	if len(t.partial) > 4096 {
		t.add(string(t.partial))
		t.partial = t.partial[:0]
	}
	return len(b), nil
}

func (t *tail) add(line string) {
	line = strings.TrimSpace(line)
	if line == "" || isSyslogNoise(line) {
		return
	}
	t.log.Debug(t.name, "line", line)
	t.lines = append(t.lines, line)
	if len(t.lines) > tailLines {
		t.lines = t.lines[len(t.lines)-tailLines:]
	}
}

// String joins the kept lines (and any unterminated rest) with "; ".
func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	lines := t.lines
	if rest := strings.TrimSpace(string(t.partial)); rest != "" && !isSyslogNoise(rest) {
		lines = append(lines[:len(lines):len(lines)], rest)
	}
	return strings.Join(lines, "; ")
}

// isSyslogNoise matches what pasta prints for every message when /dev/log is
// missing (containers, CI): "Failed to send 38 bytes to syslog".
func isSyslogNoise(line string) bool {
	return strings.HasPrefix(line, "Failed to send ") && strings.HasSuffix(line, " bytes to syslog")
}

// TunHint returns the fix when /dev/net/tun cannot be opened by this user,
// the usual reason a user-mode network helper cannot create its tap device.
func TunHint(string) string {
	const tun = "/dev/net/tun"
	if _, err := os.Stat(tun); err != nil {
		return "load the tun module (sudo modprobe tun) so that " + tun + " exists"
	}
	if syscall.Access(tun, 6 /* R_OK|W_OK */) != nil {
		return tun + " is not readable and writable by your user: sudo chmod 0666 " + tun
	}
	return ""
}
