package unroot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/unroot/unroot/api"
	"github.com/unroot/unroot/doctor"
	"github.com/unroot/unroot/forward"
	"github.com/unroot/unroot/internal/bypass"
	"github.com/unroot/unroot/internal/cgroup"
	"github.com/unroot/unroot/internal/childinit"
	"github.com/unroot/unroot/internal/copyup"
	"github.com/unroot/unroot/internal/future"
	"github.com/unroot/unroot/internal/handshake"
	"github.com/unroot/unroot/internal/idmap"
	"github.com/unroot/unroot/internal/notify"
	"github.com/unroot/unroot/internal/sigproxy"
	"github.com/unroot/unroot/internal/sockpool"
	"github.com/unroot/unroot/internal/statedir"
	"github.com/unroot/unroot/network"
	"github.com/unroot/unroot/port"
)

// Version is what /v1/info and `rootlesskit --version` report: the
// RootlessKit release whose contract unroot implements, as a semantic
// version with unroot as build metadata, so `--print-semver` still works.
const Version = "3.3.0+unroot"

// ReaperMode selects RootlessKit's --reaper behaviour: whether the command
// starts in a new session (setsid), as a PID-1 reaper's command does, or
// keeps the controlling terminal. Orphans that reach the namespace init are
// reaped either way, so none is left a zombie.
type ReaperMode int

const (
	// ReaperAuto follows PIDNS (the zero value).
	ReaperAuto ReaperMode = iota
	// ReaperOn starts the command in a new session; needs PIDNS.
	ReaperOn
	// ReaperOff keeps the command in the caller's session and terminal.
	ReaperOff
)

// ParseReaperMode parses --reaper (auto, true, false).
func ParseReaperMode(s string) (ReaperMode, error) {
	switch s {
	case "", "auto":
		return ReaperAuto, nil
	case "true":
		return ReaperOn, nil
	case "false":
		return ReaperOff, nil
	}
	return 0, fmt.Errorf("reaper %q: must be auto, true or false", s)
}

// SubIDSource selects where subordinate id ranges come from.
type SubIDSource string

const (
	// SubIDAuto tries getsubids, then /etc/subuid and /etc/subgid ("" means this too).
	SubIDAuto SubIDSource = "auto"
	// SubIDDynamic runs getsubids only (NSS: sssd, LDAP).
	SubIDDynamic SubIDSource = "dynamic"
	// SubIDStatic reads /etc/subuid and /etc/subgid only.
	SubIDStatic SubIDSource = "static"
)

// Launcher runs one command in new namespaces. Fill the fields, then call
// Start, Wait and Close. The zero value of every field is usable.
type Launcher struct {
	// Command and its arguments; required. Looked up in PATH inside.
	Command []string
	// StateDir is the state directory. "" makes a private
	// $TMPDIR/rootlesskitNNN. Either way it is removed on Close.
	StateDir string
	// Network is the network driver. Nil shares the host's network (no
	// network namespace), like RootlessKit's --net=host.
	Network network.Driver
	// Ports makes the port driver once the network is up. Nil means none:
	// /v1/ports answers "no PortDriver is available".
	Ports port.Factory
	// Publish lists ports to publish before child_pid is written.
	// Requires Ports.
	Publish []port.Spec
	// Forward lists host services to make reachable inside, each on a
	// port of the namespace (reverse forwarding, see package forward).
	// Needs a network namespace (any driver but host).
	Forward []forward.Spec
	// CopyUp lists directories to make writable with the tmpfs+symlink
	// layout (e.g. /etc, /run, /var/lib). /tmp is refused.
	CopyUp []string
	// Propagation of / inside: private, rprivate (""), slave, rslave,
	// shared or rshared. Shared kinds cannot be combined with CopyUp.
	Propagation string
	// PIDNS, CgroupNS, UTSNS and IPCNS create those namespaces too.
	PIDNS, CgroupNS, UTSNS, IPCNS bool
	// Reaper: see ReaperMode; the zero value follows PIDNS.
	Reaper ReaperMode
	// EvacuateCgroup2 moves the launcher's cgroup v2 processes into this
	// subgroup so controllers can be delegated. Needs PIDNS and CgroupNS.
	EvacuateCgroup2 string
	// DetachNetNS keeps the command in the host network namespace and puts
	// the driver's network namespace on STATE/netns instead.
	DetachNetNS bool
	// SubIDSource: see SubIDSource; "" means auto.
	SubIDSource SubIDSource
	// Env adds KEY=VALUE entries to the command's environment, which is
	// otherwise this process's environment plus ROOTLESSKIT_STATE_DIR,
	// ROOTLESSKIT_PARENT_EUID and ROOTLESSKIT_PARENT_EGID.
	Env []string
	// ListenFDs are systemd socket-activation sockets, passed to the command
	// as fds 3.. (LISTEN_FDS is left as the caller set it). When
	// ActivationPID is set, LISTEN_PID is rewritten to the command's PID.
	ListenFDs     []*os.File
	ActivationPID bool
	// Ready applies when NOTIFY_SOCKET is set (a Type=notify systemd unit):
	// "" or "notify" relays the command's READY=1 (and STATUS= etc.) to
	// systemd as this process's own, so the unit needs no NotifyAccess=all;
	// "ports" sends READY=1 once the network is up and ports are published.
	Ready string
	// Stdin, Stdout and Stderr of the command; nil means this process's.
	Stdin, Stdout, Stderr *os.File
	// Logger receives progress and warnings. Nil discards them.
	Logger *slog.Logger
	// ChildErrorPrefix starts error lines the namespace init prints itself
	// (a command killed by a signal); "" means "unroot: ".
	ChildErrorPrefix string
	// ChildReportsExit makes the namespace init also print a line for a
	// non-zero exit status, as RootlessKit's child does.
	ChildReportsExit bool
	// Bypass hands the namespace's sockets to the host kernel (see
	// docs/bypass.md); the zero value is off.
	Bypass Bypass
	// OnNetworkFailure: what to do when the network driver's helper is lost
	// for good (see NetworkFailure); "" means exit.
	OnNetworkFailure NetworkFailure

	log      *slog.Logger
	mu       sync.Mutex
	started  bool
	closed   bool
	dir      *statedir.Dir
	cmd      *exec.Cmd
	ctl      *handshake.Conn
	sockets  *sockpool.Client
	portDrv  port.Driver
	netUp    bool
	childPID int
	cmdPID   int
	sigs     *sigproxy.Forwarder
	stopSigs context.CancelFunc
	api      *apiServer
	notify   *notify.Relay
	exited   chan struct{}
	// startOK is closed when Start succeeds; until then the command's end
	// is Start's business, not the early stop's.
	startOK      chan struct{}
	releaseOnce  sync.Once
	releaseErr   error
	nsReady      chan struct{}        // closed once Start has read NSReady from ctl
	preTap       string               // the tap the child pre-creates, "" for none
	tap          *future.Future[bool] // the child's TapCreated report: preTap exists
	waitErr      error
	wg           sync.WaitGroup
	bypass       *bypass.Supervisor // nil unless --bypass runs
	fwd          *forward.Forwarder // nil without a network namespace
	bypassWhyOff string             // why not, under --bypass=auto
	released     chan struct{}      // closed when release begins
	netFailure   atomic.Pointer[netFailureErr]
}

// hostNetworker is implemented by drivers that share the host's network
// namespace instead of creating one (network/host's host driver).
type hostNetworker interface{ SharesHostNetwork() bool }

// networkName is the driver name doctor checks for: "host" when unset.
func (l *Launcher) networkName() string {
	if l.Network == nil {
		return "host"
	}
	return l.Network.Name()
}

func (l *Launcher) privateNet() bool {
	if l.Network == nil {
		return false
	}
	h, ok := l.Network.(hostNetworker)
	return !ok || !h.SharesHostNetwork()
}

func (l *Launcher) reaper() bool {
	switch l.Reaper {
	case ReaperOn:
		return true
	case ReaperOff:
		return false
	}
	return l.PIDNS
}

// Validate checks the configuration without touching the system. Its
// errors are *ConfigError, naming the fields at fault.
func (l *Launcher) Validate() error {
	if len(l.Command) == 0 || l.Command[0] == "" {
		return configErrorf("Command", "{Command} is empty: no command specified")
	}
	if l.Reaper == ReaperOn && !l.PIDNS {
		return configErrorf("Reaper", "{Reaper=ReaperOn} requires {PIDNS}: only PID 1 of a PID namespace can reap its orphans")
	}
	if _, err := childinit.PropagationFlags(l.Propagation); err != nil {
		return configErrorf("Propagation", "{Propagation} %q: must be one of private, rprivate, slave, rslave, shared, rshared", l.Propagation)
	}
	if _, err := notify.ParseMode(l.Ready); err != nil {
		return configErrorf("Ready", "{Ready} %q: want notify (the command sends READY=1) or ports (unroot sends it once ports are published)", l.Ready)
	}
	if _, err := ParseNetworkFailure(string(l.OnNetworkFailure)); err != nil {
		return configErrorf("OnNetworkFailure", "{OnNetworkFailure} %q: must be exit or keep", l.OnNetworkFailure)
	}
	for _, d := range l.CopyUp {
		if err := copyup.Validate(d); err != nil {
			return configErrorf("CopyUp", "{CopyUp} %s: %v", d, err)
		}
	}
	if len(l.CopyUp) > 0 && (l.Propagation == "shared" || l.Propagation == "rshared") {
		return configErrorf("Propagation", "{Propagation} %s cannot be combined with {CopyUp}: a copied-up directory is moved into place, which shared mounts forbid; use {Propagation=rslave}", l.Propagation)
	}
	if l.EvacuateCgroup2 != "" {
		if err := cgroup.ValidateName(l.EvacuateCgroup2); err != nil {
			return configErrorf("EvacuateCgroup2", "{EvacuateCgroup2} %q: must be a plain name like \"evac\", without /", l.EvacuateCgroup2)
		}
		if !l.PIDNS || !l.CgroupNS {
			return configErrorf("EvacuateCgroup2", "{EvacuateCgroup2} requires {PIDNS} and {CgroupNS}")
		}
	}
	if l.DetachNetNS && !l.privateNet() {
		return configErrorf("DetachNetNS", "{DetachNetNS} requires a network namespace: use {Network=private}")
	}
	if err := l.validateBypass(); err != nil {
		return err
	}
	if err := l.validateForwards(); err != nil {
		return err
	}
	if len(l.Publish) > 0 && l.Ports == nil {
		return configErrorf("Publish", "{Publish} requires a port driver: add {Ports=builtin}")
	}
	if l.StateDir != "" {
		// sun_path holds 107 bytes; api.sock (and the API server's
		// temporary name next to it) must fit.
		abs, err := filepath.Abs(l.StateDir)
		if err == nil && len(abs)+len("/.api-sock-0000000000/s") > 107 {
			return configErrorf("StateDir", "{StateDir} %s is too long (%d bytes) for the unix socket api.sock inside it: use a path of at most %d bytes", abs, len(abs), 107-len("/.api-sock-0000000000/s"))
		}
	}
	return nil
}

// Start creates the namespaces, starts the network and port drivers,
// publishes ports, starts the command, serves STATE/api.sock and writes
// STATE/child_pid. On error nothing is left running or mounted and the state
// directory is removed.
//
// From Start to Close this process catches every catchable signal except
// SIGCHLD, SIGPIPE and SIGURG and forwards it to the command, as
// RootlessKit does; SIGTERM, SIGINT, SIGHUP or SIGQUIT before the command
// runs abort Start instead, and any other signal before then is dropped
// with a warning (never held for the command: it would arrive before the
// command's handler, or not, by chance). ctx bounds Start only, not the run.
func (l *Launcher) Start(ctx context.Context) (err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.started {
		return errors.New("start launcher: already started")
	}
	l.started = true
	l.log = l.Logger
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	if err := l.Validate(); err != nil {
		return err
	}
	// Host problems reach us as bare errnos; doctor names the cause and
	// the fix (it returns errors it cannot explain unchanged).
	defer func() {
		if err != nil {
			err = doctor.Explain(ctx, err, doctor.Options{Net: l.networkName(), Logger: l.log})
		}
	}()
	if err := doctor.UserNSSettings(); err != nil {
		return err
	}
	l.exited = make(chan struct{})
	l.nsReady = make(chan struct{})
	l.startOK = make(chan struct{})
	l.released = make(chan struct{})
	s := &startup{l: l, ctx: ctx, t0: time.Now()}
	defer s.end(&err)
	return s.run()
}

var errChildExited = errors.New("namespace init exited")

// interruptedError is a start-up aborted by a terminating signal.
type interruptedError struct{ sig os.Signal }

func (e *interruptedError) Error() string {
	return fmt.Sprintf("start-up interrupted by signal: %v", e.sig)
}

// startErr turns a set-up failure into the clearest error: the child's own
// report if it sent one, the child's exit if it died, ctx's cause otherwise.
func (l *Launcher) startErr(ctx context.Context, err error) error {
	var ie *interruptedError
	if errors.As(context.Cause(ctx), &ie) {
		return ie
	}
	var pe *handshake.PeerError
	if errors.As(err, &pe) {
		return err
	}
	if errors.Is(err, io.EOF) || errors.Is(context.Cause(ctx), errChildExited) {
		select {
		case <-l.exited:
			return fmt.Errorf("namespace init exited during set-up (%v): %w", l.waitErr, err)
		default:
		}
	}
	return err
}

func (l *Launcher) cloneflags() uintptr {
	fl := uintptr(syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS)
	if l.privateNet() && !l.DetachNetNS {
		fl |= syscall.CLONE_NEWNET
	}
	if l.PIDNS {
		fl |= syscall.CLONE_NEWPID
	}
	if l.CgroupNS {
		fl |= syscall.CLONE_NEWCGROUP
	}
	if l.UTSNS {
		fl |= syscall.CLONE_NEWUTS
	}
	if l.IPCNS {
		fl |= syscall.CLONE_NEWIPC
	}
	return fl
}

func (l *Launcher) networkChild() network.Child {
	pid := strconv.Itoa(l.childPID)
	c := network.Child{
		PID:      l.childPID,
		NetNS:    "/proc/" + pid + "/ns/net",
		UserNS:   "/proc/" + pid + "/ns/user",
		Detached: l.DetachNetNS,
		StateDir: l.dir.Path(),
		OpenTap:  l.openTap,
		PreTap:   l.waitPreTap,
	}
	if l.DetachNetNS {
		c.NetNS = "/proc/" + pid + "/root" + l.dir.Join(statedir.NetNS)
	}
	return c
}

// waitPreTap waits for the child's report on the tap it pre-creates and
// tells whether name is that tap and exists.
func (l *Launcher) waitPreTap(ctx context.Context, name string) bool {
	if l.tap == nil || name != l.preTap {
		return false
	}
	select {
	case <-l.tap.Done():
		ok, _ := l.tap.Wait()
		return ok
	case <-ctx.Done():
		return false
	}
}

// openTap asks the child for a tap device fd; used by in-process drivers.
// The tap carries a virtio-net header so that the stack can move
// segmentation-offloaded frames (up to 64 KiB) in one read or write; drivers
// check the flag on the fd, so one that cannot use it still works.
func (l *Launcher) openTap(ctx context.Context, name string) (*os.File, error) {
	select {
	case <-l.nsReady:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if err := l.ctl.Send(handshake.Msg{Kind: handshake.OpenTap, TapName: name, VnetHdr: true}); err != nil {
		return nil, err
	}
	_, files, err := l.ctl.Expect(ctx, handshake.Tap)
	if err != nil {
		return nil, fmt.Errorf("open tap %s in the namespace: %w", name, err)
	}
	if len(files) != 1 {
		for _, f := range files {
			f.Close()
		}
		return nil, fmt.Errorf("open tap %s in the namespace: got %d fds, want 1", name, len(files))
	}
	return files[0], nil
}

// Wait waits for the command to end and returns its exit status: the
// command's own code, or 255 when it (or the namespace init) was killed by
// a signal. err describes a non-zero exit.
func (l *Launcher) Wait() (int, error) {
	if l.exited == nil || l.cmd == nil {
		return 1, errors.New("wait: launcher not started")
	}
	<-l.exited
	if nf := l.netFailure.Load(); nf != nil {
		return 1, nf
	}
	err := l.waitErr
	if err == nil {
		return 0, nil
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Exited() {
			return ws.ExitStatus(), fmt.Errorf("child exited: %w", err)
		}
		return 255, fmt.Errorf("child exited: %w", err)
	}
	return 1, fmt.Errorf("wait for child: %w", err)
}

// Close stops the API, the port and network drivers and the namespace init
// (and with it the command), and removes the state directory. It is safe to
// call more than once.
func (l *Launcher) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed || !l.started {
		return nil
	}
	return l.teardown()
}

func (l *Launcher) teardown() error {
	l.closed = true
	t0 := time.Now()
	mark := func(stage string) { l.log.Debug("close: "+stage, "elapsed", time.Since(t0)) }
	defer mark("done")
	if l.cmd != nil && l.cmd.Process != nil {
		select {
		case <-l.exited:
		default:
			l.cmd.Process.Kill()
			<-l.exited
		}
	}
	mark("namespace init stopped")
	if l.stopSigs != nil {
		l.stopSigs()
	}
	if l.sigs != nil {
		// Releasing every caught signal costs a round trip per signal to
		// Go's signal thread; nothing below needs them released. The
		// goroutine ends when they are.
		go l.sigs.Stop()
	}
	err := l.release()
	mark("api, drivers and state directory released")
	l.wg.Wait()
	if l.ctl != nil {
		l.ctl.Close()
	}
	if l.sockets != nil {
		l.sockets.Close()
	}
	return err
}

// release stops what serves the namespace from outside (the API, the port
// and network drivers, the notify relay) and removes the state directory,
// once: as soon as the init reports that the command has ended, so it
// overlaps the init's own exit, or else from teardown.
func (l *Launcher) release() error {
	l.releaseOnce.Do(func() {
		if l.released != nil {
			close(l.released)
		}
		var errs []error
		if l.api != nil {
			errs = append(errs, l.api.Close())
		}
		if l.bypass != nil {
			errs = append(errs, l.bypass.Close())
		}
		if l.fwd != nil {
			errs = append(errs, l.fwd.Close())
		}
		if l.portDrv != nil {
			errs = append(errs, l.portDrv.Close())
		}
		// The helper's exit overlaps the rest, the state directory's
		// removal included: nothing in it is the helper's to clean.
		netErr := make(chan error, 1)
		if l.netUp {
			go func() { netErr <- l.Network.Close() }()
		} else {
			netErr <- nil
		}
		if l.notify != nil {
			errs = append(errs, l.notify.Close())
		}
		if l.dir != nil {
			errs = append(errs, l.dir.Close())
		}
		errs = append(errs, <-netErr)
		l.releaseErr = errors.Join(errs...)
	})
	return l.releaseErr
}

// ChildPID is the namespace init's PID (STATE/child_pid), 0 before Start.
func (l *Launcher) ChildPID() int { return l.childPID }

// CommandPID is the command's PID as seen from the host, 0 before Start.
func (l *Launcher) CommandPID() int { return l.cmdPID }

// StateDir returns the absolute state directory once started.
func (l *Launcher) StateDirPath() string {
	if l.dir == nil {
		return ""
	}
	return l.dir.Path()
}

// Info is the body of GET /v1/info.
func (l *Launcher) Info() api.Info {
	info := api.Info{APIVersion: api.Version, Version: Version, ChildPID: l.childPID}
	if l.dir != nil {
		info.StateDir = l.dir.Path()
	}
	if l.Network != nil {
		info.NetworkDriver = l.Network.Info()
	}
	if l.portDrv != nil {
		pi := l.portDrv.Info()
		info.PortDriver = &pi
	}
	info.Bypass = l.bypassInfo()
	info.Health = l.networkHealth()
	return info
}

func identity() idmap.Identity {
	id := idmap.Identity{UID: uint32(os.Geteuid()), GID: uint32(os.Getegid())}
	if u, err := user.LookupId(strconv.Itoa(os.Geteuid())); err == nil {
		id.Name = u.Username
	}
	return id
}
