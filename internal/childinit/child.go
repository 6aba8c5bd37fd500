package childinit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/unroot/unroot/internal/copyup"
	"github.com/unroot/unroot/internal/handshake"
	"github.com/unroot/unroot/internal/netconf"
	"github.com/unroot/unroot/internal/sigproxy"
	"github.com/unroot/unroot/internal/sockpool"
	"github.com/unroot/unroot/internal/statedir"
	"github.com/unroot/unroot/internal/sys"
	"github.com/unroot/unroot/internal/wire"
	"github.com/unroot/unroot/network"
)

const (
	msRec     = sys.MS_REC
	msPrivate = sys.MS_PRIVATE
	msSlave   = sys.MS_SLAVE
	msShared  = sys.MS_SHARED
)

// Run is the namespace init's main. It never returns.
func Run(encoded string) {
	cfg, err := DecodeConfig(encoded)
	if err != nil {
		fmt.Fprintf(os.Stderr, "unroot: child: %v\n", err)
		os.Exit(1)
	}
	if cfg.Stage == 1 {
		os.Exit(stage1(cfg))
	}
	os.Exit(stage2(cfg, nil, 0))
}

// RunActivation is the socket-activation helper: LISTEN_PID must name the
// process that will use the fds, which is only known after fork, so this
// helper sets it to its own PID and execs the command in place.
func RunActivation() {
	os.Unsetenv(EnvActivation)
	os.Setenv("LISTEN_PID", fmt.Sprint(os.Getpid()))
	if len(os.Args) == 0 {
		os.Exit(1)
	}
	path, err := exec.LookPath(os.Args[0])
	if err == nil {
		err = syscall.Exec(path, os.Args, os.Environ())
	}
	fmt.Fprintf(os.Stderr, "unroot: exec %s: %v\n", os.Args[0], err)
	os.Exit(1)
}

func envWithout(env []string, keys ...string) []string {
	return slices.DeleteFunc(slices.Clone(env), func(kv string) bool {
		for _, k := range keys {
			if strings.HasPrefix(kv, k+"=") {
				return true
			}
		}
		return false
	})
}

// stage1 waits for the id maps. The launcher normally clones us with every
// capability raised as ambient, so they survived the exec that made this
// process, which ran while our ids were still unmapped; then we simply go
// on. Without them (an exec as an unmapped uid drops all capabilities) we
// re-execute ourselves: an exec as the now-mapped uid 0 gets them back.
func stage1(cfg Config) int {
	f := os.NewFile(uintptr(cfg.CtlFD), "ctl")
	// FromFile works on a close-on-exec duplicate; the original fd stays
	// open for a re-exec.
	c, err := handshake.FromFile(f)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%schild: %v\n", cfg.ErrPrefix, err)
		return 1
	}
	preconfigured := 0 // the index of the tap stage 1 addressed
	if cfg.PreTap != "" {
		// Creating a tap needs only CAP_NET_ADMIN over our netns, which
		// the ambient set gives us before the ids are mapped.
		m := handshake.Msg{Kind: handshake.TapCreated, TapName: cfg.PreTap}
		err := sys.CreatePersistentTap(cfg.PreTap)
		if err != nil {
			m.Err = err.Error()
		}
		if err := c.Send(m); err != nil {
			return 1
		}
		// The helper attaches while we address the device; a failure here
		// is retried, and reported, when the Network message comes.
		if err == nil && cfg.PreSetup != nil {
			if idx, err := netconf.Up(*cfg.PreSetup); err == nil && cfg.PreSetup.IfName == cfg.PreTap {
				preconfigured = idx
			}
		}
	}
	if _, _, err := c.Expect(context.Background(), handshake.IDMapped); err != nil {
		// EOF: the parent failed and reports why itself.
		if !errors.Is(err, io.EOF) {
			fmt.Fprintf(os.Stderr, "%schild: %v\n", cfg.ErrPrefix, err)
		}
		return 1
	}
	if sys.HasSysAdmin() {
		f.Close()
		return stage2(cfg, c, preconfigured)
	}
	cfg.Stage = 2
	env := append(envWithout(os.Environ(), EnvConfig), EnvConfig+"="+cfg.Encode())
	err = syscall.Exec("/proc/self/exe", os.Args, env)
	runtime.KeepAlive(f)
	c.Send(handshake.Msg{Kind: handshake.Error, Err: fmt.Sprintf("re-exec /proc/self/exe in the user namespace: %v", err)})
	return 1
}

// stage2 returns the process exit status. ctl is the control connection
// when stage 1 already holds it, nil after a re-exec. preconfigured is the
// index of the tap to which stage 1 applied cfg.PreSetup, 0 for none.
func stage2(cfg Config, ctl *handshake.Conn, preconfigured int) int {
	// The clone's death signal does not survive a re-exec; set it again,
	// then make sure the parent did not die in between. As PID 1, SIGKILL takes
	// the whole PID namespace with us. Without a PID namespace that would
	// leave the command's descendants running, so we watch the parent with
	// a pidfd instead, become the command's subreaper (orphans stay under
	// us, where we can find them) and kill the whole tree when it dies.
	if cfg.PIDNS {
		if err := sys.SetPdeathsig(sys.SIGKILL); err != nil {
			return 1
		}
	} else {
		parentGone, err := sys.WatchExit(cfg.ParentPID)
		if err != nil {
			// No pidfd (Linux < 5.3): the command itself still dies with us.
			if err := sys.SetPdeathsig(sys.SIGKILL); err != nil {
				return 1
			}
		} else {
			if err := sys.SetChildSubreaper(); err != nil {
				return 1
			}
			// Without a re-exec the clone's SIGKILL death signal is still
			// set; it would kill us before we could kill the tree.
			if err := sys.SetPdeathsig(0); err != nil {
				return 1
			}
			go func() {
				<-parentGone
				killTree()
				os.Exit(137)
			}()
		}
		if sys.Getppid() != cfg.ParentPID {
			return 1
		}
	}
	// Catch signals (as PID 1 we would otherwise ignore them) while the
	// set-up runs: Go enables each with a round trip to its signal thread.
	// Until then Go's own handler makes a terminating signal end us, which
	// is what relaySignals does too before the command runs.
	caught := make(chan *sigproxy.Forwarder, 1)
	var cmdPID atomic.Int64
	go func() {
		f := sigproxy.Catch()
		caught <- f
		relaySignals(f, &cmdPID)
	}()

	if ctl == nil {
		ctlF := os.NewFile(uintptr(cfg.CtlFD), "ctl")
		var err error
		ctl, err = handshake.FromFile(ctlF)
		ctlF.Close()
		if err != nil {
			fmt.Fprintf(os.Stderr, "%schild: %v\n", cfg.ErrPrefix, err)
			return 1
		}
	}
	var done *os.File
	if cfg.DoneFD != 0 {
		// Kept from the command: its copy would hold the pipe open.
		syscall.CloseOnExec(cfg.DoneFD)
		done = os.NewFile(uintptr(cfg.DoneFD), "done")
	}
	sockF := os.NewFile(uintptr(cfg.SockFD), "sock")
	sock, err := handshake.FromFile(sockF)
	sockF.Close()
	fail := func(err error) int {
		if ctl.Send(handshake.Msg{Kind: handshake.Error, Err: err.Error()}) != nil {
			fmt.Fprintf(os.Stderr, "%schild: %v\n", cfg.ErrPrefix, err)
		}
		return 1
	}
	if err != nil {
		return fail(err)
	}
	if err := setupNamespaces(cfg); err != nil {
		return fail(err)
	}
	worker := &netnsWorker{}
	if cfg.DetachNetNS {
		worker, err = startDetachedNetNS(filepath.Join(cfg.StateDir, statedir.NetNS))
		if err != nil {
			return fail(err)
		}
	}
	if err := ctl.Send(handshake.Msg{Kind: handshake.NSReady}); err != nil {
		return 1
	}
	// Mounts do not depend on the network set-up, so they run while the
	// parent starts the network driver (which may ask us for a tap).
	mounted := make(chan error, 1)
	go func() { mounted <- prepareMounts(cfg) }()
	// Whatever ends the set-up, let the mounts finish first: their scratch
	// directories are removed as they complete.
	mountsDone := false
	defer func() {
		if !mountsDone {
			<-mounted
		}
	}()
	ctx := context.Background()
	var setup network.Setup
	for {
		m, _, err := ctl.Recv(ctx)
		if err != nil {
			return 1 // the parent is gone or failed; it reports why
		}
		if m.Kind == handshake.OpenTap {
			var tap *os.File
			err := worker.Do(func() (err error) { tap, err = sys.OpenTap(m.TapName, m.VnetHdr); return })
			if err != nil {
				ctl.Send(handshake.Msg{Kind: handshake.Error, Err: err.Error()})
				continue
			}
			err = ctl.Send(handshake.Msg{Kind: handshake.Tap}, tap)
			tap.Close()
			if err != nil {
				return 1
			}
			continue
		}
		if m.Kind != handshake.Network {
			return fail(fmt.Errorf("child: unexpected %s message", m.Kind))
		}
		setup = *m.Setup
		break
	}
	// Devices and the state-dir files while the mounts finish; the binds
	// over /etc need those.
	// The set-up holds if the driver kept to its prediction and its helper
	// runs on that very device (one that fell back to a tap of its own
	// made a new device, with a new index).
	addressed := preconfigured != 0 && sameSetup(setup, *cfg.PreSetup) && sameLink(worker, cfg.PreTap, preconfigured)
	netErr := configureNet(cfg, setup, worker, addressed)
	mountsDone = true
	if err := errors.Join(<-mounted, netErr); err != nil {
		return fail(err)
	}
	if err := publishNetFiles(cfg, setup); err != nil {
		return fail(err)
	}
	srv := &sockpool.Server{InNetNS: worker.Do, NewSocket: sys.Socket, Transparent: sockpool.SetupTransparent}
	go srv.Serve(ctx, sock)

	// Reap every child: as PID 1 orphans of the namespace come to us, and
	// as subreaper so do orphans of the command.
	chld := make(chan os.Signal, 16)
	signal.Notify(chld, syscall.SIGCHLD)
	// Every signal must reach the command from its first instruction.
	(<-caught).Ready()
	pid, bypass, err := startCommand(cfg)
	if err != nil {
		return fail(err)
	}
	cmdPID.Store(int64(pid))
	if err := sendStarted(ctl, pid, bypass); err != nil {
		return 1
	}
	ws := reap(pid, chld)
	// A helper program under way (iptables preparing transparent sockets
	// for a port published just before the command ended) finishes and is
	// reaped by os/exec; none starts after this, so none outlives us.
	sockpool.ExecMu.Lock()
	if !cfg.PIDNS {
		// As PID 1 our exit would take everyone left in the namespace with
		// us; do the same without a PID namespace, so nothing the command
		// started outlives the launcher.
		killTree()
	}
	if done != nil {
		done.Write([]byte{0})
	}
	switch {
	case ws.Exited():
		if ws.ExitStatus() != 0 && cfg.ReportExit {
			fmt.Fprintf(os.Stderr, "%scommand %v exited: exit status %d\n", cfg.ErrPrefix, cfg.Command, ws.ExitStatus())
		}
		return ws.ExitStatus()
	case ws.Signaled():
		fmt.Fprintf(os.Stderr, "%scommand %v exited: signal: %v\n", cfg.ErrPrefix, cfg.Command, ws.Signal())
		return 255
	}
	return 255
}

// relaySignals forwards caught signals to the command once it runs. Before
// that, a terminating signal ends the set-up.
func relaySignals(f *sigproxy.Forwarder, cmdPID *atomic.Int64) {
	for s := range f.C() {
		sig := s.(syscall.Signal)
		if pid := cmdPID.Load(); pid != 0 {
			_ = syscall.Kill(int(pid), sig)
			continue
		}
		switch sig {
		case syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT:
			os.Exit(128 + int(sig))
		}
	}
}

// reap waits for every child that ends up with us (as PID 1) and returns
// the command's status.
func reap(pid int, chld <-chan os.Signal) syscall.WaitStatus {
	for {
		sockpool.ExecMu.Lock() // leave helpers run by os/exec to their Wait
		for {
			var ws syscall.WaitStatus
			got, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if err == syscall.EINTR {
				continue
			}
			if err != nil || got <= 0 {
				break
			}
			if got == pid {
				sockpool.ExecMu.Unlock()
				return ws
			}
		}
		sockpool.ExecMu.Unlock()
		<-chld
	}
}

func setupNamespaces(cfg Config) error {
	flags, err := PropagationFlags(cfg.Propagation)
	if err != nil {
		return err
	}
	if err := sys.Mount("none", "/", "", flags, ""); err != nil {
		return fmt.Errorf("set propagation of / to %s: %w", cfg.Propagation, err)
	}
	if cfg.PIDNS {
		const fl = sys.MS_NOSUID | sys.MS_NODEV | sys.MS_NOEXEC
		if err := sys.Mount("proc", "/proc", "proc", fl, ""); err != nil {
			if err2 := sys.Mount("proc", "/proc", "proc", fl|sys.MS_RDONLY, ""); err2 != nil {
				return fmt.Errorf("mount /proc for the new PID namespace: %w (a host /proc with masked or read-only sub-mounts blocks it; run without --pidns)", err)
			}
		}
	}
	return nil
}

// prepareMounts copies up directories and mounts a fresh /sys (or cgroup2).
func prepareMounts(cfg Config) error {
	scratch := scratchDir(cfg)
	for _, d := range cfg.CopyUp {
		if err := copyup.Do(d, scratch); err != nil {
			return err
		}
	}
	if cfg.PrivateNet && !cfg.DetachNetNS {
		return mountSysfs(cfg.Cgroup2, scratch)
	}
	if cfg.Cgroup2 {
		if err := sys.Mount("none", "/sys/fs/cgroup", "cgroup2", 0, ""); err != nil {
			return fmt.Errorf("mount cgroup2 on /sys/fs/cgroup: %w (--evacuate-cgroup2 needs --cgroupns)", err)
		}
	}
	return nil
}

// scratchDir is where mounts are staged for a moment: the state directory,
// which the launcher removes even after a kill, unless a copy-up covers it
// (dockerd-rootless.sh keeps it in $XDG_RUNTIME_DIR and copies up /run), in
// which case the tmpfs would hide it half-way and /tmp is used instead.
func scratchDir(cfg Config) string {
	for _, d := range cfg.CopyUp {
		d = filepath.Clean(d)
		if cfg.StateDir == d || strings.HasPrefix(cfg.StateDir, d+"/") {
			return "/tmp"
		}
	}
	return cfg.StateDir
}

// configureNet brings the devices up as the driver's Setup says (unless
// stage 1 addressed them already); the launcher writes resolv.conf and
// hosts in STATE.
func configureNet(cfg Config, s network.Setup, w *netnsWorker, addressed bool) error {
	if cfg.PrivateNet && !addressed {
		if err := w.Do(func() error {
			_, err := netconf.Up(s)
			return err
		}); err != nil {
			return err
		}
	}
	return nil
}

// publishNetFiles binds STATE's resolv.conf and hosts over /etc's. It runs
// after prepareMounts: the binds land on the copied-up /etc.
func publishNetFiles(cfg Config, s network.Setup) error {
	if !cfg.PrivateNet || len(s.DNS) == 0 || cfg.DetachNetNS {
		// No DNS to publish, or the command is not in the detached netns
		// (the files are for nsenter users).
		return nil
	}
	etcCopied := slices.ContainsFunc(cfg.CopyUp, func(d string) bool { return filepath.Clean(d) == "/etc" })
	for _, name := range []string{statedir.ResolvConf, statedir.Hosts} {
		if err := bindNetFile(filepath.Join(cfg.StateDir, name), "/etc/"+name, etcCopied); err != nil {
			return err
		}
	}
	return nil
}

// sameLink reports whether the device name still has index idx.
func sameLink(w *netnsWorker, name string, idx int) bool {
	var now int
	err := w.Do(func() (err error) { now, err = sys.IfIndex(name); return })
	return err == nil && now == idx
}

// sameSetup reports whether two set-ups configure the devices alike.
func sameSetup(a, b network.Setup) bool {
	var ea, eb wire.Encoder
	a.EncodeWire(&ea)
	b.EncodeWire(&eb)
	return bytes.Equal(ea.Bytes(), eb.Bytes())
}

// bindNetFile mounts the state-dir copy over /etc/NAME. In a copied-up /etc
// the entry is a symlink to the host's file; it is replaced by an empty file
// first so the bind mount lands on our tmpfs, not on the host file.
func bindNetFile(src, dst string, etcCopied bool) error {
	if etcCopied {
		os.Remove(dst)
		if err := os.WriteFile(dst, nil, 0o644); err != nil {
			return fmt.Errorf("create %s in the copied-up /etc: %w", dst, err)
		}
	} else if _, err := os.Stat(dst); err != nil {
		return nil // nothing to cover; the host has no such file
	}
	if err := sys.Mount(src, dst, "", sys.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind %s on %s: %w", src, dst, err)
	}
	return nil
}

// mountSysfs puts a sysfs of the new network namespace on /sys, so
// /sys/class/net lists our devices, and keeps the cgroup mount (or mounts a
// fresh cgroup2 for --evacuate-cgroup2).
func mountSysfs(cgroup2 bool, scratch string) error {
	// The cgroup tree is held detached while sysfs covers /sys (parked on a
	// scratch directory where open_tree is missing), then put back.
	var restore func() error
	if !cgroup2 {
		if _, err := os.Stat("/sys/fs/cgroup"); err == nil {
			if tree, err := sys.CloneTree("/sys/fs/cgroup"); err == nil {
				defer tree.Close()
				restore = func() error { return tree.Attach("/sys/fs/cgroup") }
			} else {
				tmp, err := os.MkdirTemp(scratch, ".sys-")
				if err != nil {
					return fmt.Errorf("mount /sys: %w", err)
				}
				defer os.Remove(tmp)
				if err := sys.Mount("/sys/fs/cgroup", tmp, "", sys.MS_BIND|sys.MS_REC, ""); err != nil {
					return fmt.Errorf("keep /sys/fs/cgroup: %w", err)
				}
				defer sys.Unmount(tmp, syscall.MNT_DETACH) // a no-op once moved
				restore = func() error { return sys.Mount(tmp, "/sys/fs/cgroup", "", sys.MS_MOVE, "") }
			}
		}
	}
	if err := sys.Mount("none", "/sys", "sysfs", 0, ""); err != nil {
		if err2 := sys.Mount("none", "/sys", "sysfs", sys.MS_RDONLY, ""); err2 != nil {
			return fmt.Errorf("mount sysfs on /sys for the new network namespace: %w", err)
		}
	}
	if cgroup2 {
		if err := sys.Mount("none", "/sys/fs/cgroup", "cgroup2", 0, ""); err != nil {
			return fmt.Errorf("mount cgroup2 on /sys/fs/cgroup: %w (--evacuate-cgroup2 needs --cgroupns)", err)
		}
	} else if restore != nil {
		if err := restore(); err != nil {
			return fmt.Errorf("move cgroup mount back to /sys/fs/cgroup: %w", err)
		}
	}
	return nil
}

func startCommand(cfg Config) (int, bypassResult, error) {
	env := envWithout(os.Environ(), EnvConfig)
	argv := cfg.Command
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return 0, bypassResult{}, fmt.Errorf("start command: %w", err)
	}
	if cfg.Activation {
		path = "/proc/self/exe"
		env = append(env, EnvActivation+"=1")
	}
	// Capabilities are per thread. The command is forked from this one,
	// with the ambient and inheritable sets the launcher raised for us
	// cleared, so it starts as a plain uid 0 would. The thread stays locked
	// for good: the command's Pdeathsig fires when its forking thread ends.
	runtime.LockOSThread()
	if err := sys.DropInheritable(); err != nil {
		return 0, bypassResult{}, fmt.Errorf("start command: %w", err)
	}
	bypass, err := installBypass(cfg.Bypass)
	if err != nil {
		return 0, bypassResult{}, err
	}
	files := []uintptr{0, 1, 2}
	for i := range cfg.ListenFDs {
		files = append(files, uintptr(3+i))
	}
	pid, err := syscall.ForkExec(path, argv, &syscall.ProcAttr{
		Env:   env,
		Files: files,
		Sys:   &syscall.SysProcAttr{Setsid: cfg.Reaper, Pdeathsig: syscall.SIGKILL},
	})
	if err != nil {
		bypass.close()
		return 0, bypassResult{}, fmt.Errorf("start command %s: %w", argv[0], err)
	}
	return pid, bypass, nil
}

// netnsWorker runs functions in the namespace init's network namespace. For
// a detached netns that is a dedicated OS thread moved into it; otherwise
// the whole process is already there and functions run in place.
type netnsWorker struct {
	ch chan func()
}

// Do runs fn in the netns and returns its error.
func (w *netnsWorker) Do(fn func() error) error {
	if w.ch == nil {
		return fn()
	}
	errc := make(chan error, 1)
	w.ch <- func() { errc <- fn() }
	return <-errc
}

// startDetachedNetNS creates a network namespace on a locked thread and
// bind-mounts it on path, where drivers and `nsenter -n` find it. The
// thread stays in that netns and is never unlocked, so Go never schedules
// other goroutines on it.
func startDetachedNetNS(path string) (*netnsWorker, error) {
	w := &netnsWorker{ch: make(chan func())}
	ready := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := sys.Unshare(sys.CLONE_NEWNET); err != nil {
			ready <- fmt.Errorf("create detached network namespace: %w", err)
			return // the locked thread exits with the goroutine
		}
		f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o400)
		if err != nil {
			ready <- fmt.Errorf("create %s: %w", path, err)
			return
		}
		f.Close()
		src := fmt.Sprintf("/proc/self/task/%d/ns/net", sys.Gettid())
		if err := sys.Mount(src, path, "", sys.MS_BIND, ""); err != nil {
			ready <- fmt.Errorf("bind network namespace on %s: %w", path, err)
			return
		}
		ready <- nil
		for fn := range w.ch {
			fn()
		}
	}()
	if err := <-ready; err != nil {
		return nil, err
	}
	return w, nil
}

// killTree kills every descendant. Orphans reparent to us (subreaper) as
// their parents die, so it repeats until none is left.
func killTree() {
	for range 100 {
		// The common case, nothing left, costs one syscall instead of a
		// walk through /proc (about a millisecond on the exit path).
		if !sys.HasChildren() {
			return
		}
		pids := descendants(os.Getpid())
		if len(pids) == 0 {
			return
		}
		for _, p := range pids {
			syscall.Kill(p, syscall.SIGKILL)
		}
		for {
			got, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if err != nil || got <= 0 {
				break
			}
		}
	}
}

// descendants lists the live descendants of pid from /proc's per-thread
// children lists.
func descendants(pid int) []int {
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", p))
		for _, t := range tasks {
			b, _ := os.ReadFile(t)
			for _, f := range strings.Fields(string(b)) {
				var c int
				if _, err := fmt.Sscan(f, &c); err == nil {
					out = append(out, c)
					queue = append(queue, c)
				}
			}
		}
	}
	return out
}
