package childinit

import (
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
	"syscall"

	"github.com/unroot/unroot/internal/future"
	"github.com/unroot/unroot/internal/handshake"
	"github.com/unroot/unroot/internal/netconf"
	"github.com/unroot/unroot/internal/operr"
	"github.com/unroot/unroot/internal/sigproxy"
	"github.com/unroot/unroot/internal/sockpool"
	"github.com/unroot/unroot/internal/statedir"
	"github.com/unroot/unroot/internal/sys"
	"github.com/unroot/unroot/network"
)

// Run is the namespace init's main. It never returns.
func Run(encoded string) {
	cfg, err := DecodeConfig(encoded)
	if err == nil && cfg.CmdFD != 0 {
		cfg.Command, err = readCommand(cfg.CmdFD)
	}
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
	c.Send(handshake.ErrorMsg(operr.Errorf(operr.UserNS, "/proc/self/exe", "re-exec /proc/self/exe in the user namespace: %w", err)))
	return 1
}

// stage2 returns the process exit status. ctl is the control connection
// when stage 1 already holds it, nil after a re-exec. preconfigured is the
// index of the tap to which stage 1 applied cfg.PreSetup, 0 for none.
//
// Its steps: watch the parent, catch signals, set up the mount and PID
// namespaces (and the detached netns), report NSReady, mount in the
// background while serving tap requests until the network set-up comes,
// configure the devices and bind the network files, start the command,
// reap until it ends.
func stage2(cfg Config, ctl *handshake.Conn, preconfigured int) int {
	if err := watchParent(cfg); err != nil {
		return 1
	}
	signals, cmdStarted := catchSignals()
	ch, err := openChannels(cfg, ctl)
	if ch.ctl == nil {
		fmt.Fprintf(os.Stderr, "%schild: %v\n", cfg.ErrPrefix, err)
		return 1
	}
	fail := func(err error) int {
		// Off this thread: it may be under the command's filter.
		if sendOffThread(ch.ctl, handshake.ErrorMsg(err)) != nil {
			fmt.Fprintf(os.Stderr, "%schild: %v\n", cfg.ErrPrefix, err)
		}
		return 1
	}
	if err != nil {
		return fail(err)
	}
	worker, code := setUpNetwork(cfg, ch.ctl, preconfigured, fail)
	if worker == nil {
		return code
	}
	srv := &sockpool.Server{InNetNS: worker.Do, NewSocket: sys.Socket, Transparent: sockpool.SetupTransparent}
	go srv.Serve(context.Background(), ch.sock)
	if err := listenForwards(cfg, ch.ctl, worker); err != nil {
		return fail(err)
	}

	// Reap every child: as PID 1 orphans of the namespace come to us, and
	// as subreaper so do orphans of the command.
	chld := make(chan os.Signal, 16)
	signal.Notify(chld, syscall.SIGCHLD)
	// Every signal must reach the command from its first instruction.
	(<-signals).Ready()
	pid, bypass, err := startCommand(cfg)
	if err != nil {
		return fail(err)
	}
	cmdStarted <- pid
	if err := sendStarted(ch.ctl, pid, bypass); err != nil {
		return 1
	}
	return finish(cfg, reap(pid, chld), ch.done)
}

// channels are the init's ends of what the launcher handed it.
type channels struct {
	ctl  *handshake.Conn // nil when even the control channel failed
	sock *handshake.Conn // socket requests
	done *os.File        // nil without one
}

// openChannels wraps the inherited descriptors; the command inherits none of
// them. With ctl set and an error, the error is to be reported over ctl.
func openChannels(cfg Config, ctl *handshake.Conn) (channels, error) {
	var ch channels
	if ctl == nil {
		ctlF := os.NewFile(uintptr(cfg.CtlFD), "ctl")
		var err error
		ctl, err = handshake.FromFile(ctlF)
		ctlF.Close()
		if err != nil {
			return ch, err
		}
	}
	ch.ctl = ctl
	if cfg.CmdFD != 0 {
		syscall.Close(cfg.CmdFD) // read in Run; the command must not inherit it
	}
	if cfg.DoneFD != 0 {
		// Kept from the command: its copy would hold the pipe open.
		syscall.CloseOnExec(cfg.DoneFD)
		ch.done = os.NewFile(uintptr(cfg.DoneFD), "done")
	}
	sockF := os.NewFile(uintptr(cfg.SockFD), "sock")
	var err error
	ch.sock, err = handshake.FromFile(sockF)
	sockF.Close()
	return ch, err
}

// setUpNetwork runs the namespace stages up to the network files bound
// into /etc: namespaces, the detached netns, the launcher's network set-up,
// with the mounts alongside. A nil worker means it failed, with code as the
// init's exit status (the failure already reported through fail).
func setUpNetwork(cfg Config, ctl *handshake.Conn, preconfigured int, fail func(error) int) (*netnsWorker, int) {
	if err := setupNamespaces(cfg); err != nil {
		return nil, fail(err)
	}
	worker := &netnsWorker{}
	if cfg.DetachNetNS {
		var err error
		worker, err = startDetachedNetNS(filepath.Join(cfg.StateDir, statedir.NetNS))
		if err != nil {
			return nil, fail(err)
		}
	}
	if err := ctl.Send(handshake.Msg{Kind: handshake.NSReady}); err != nil {
		return nil, 1
	}
	// Overlap: mounts do not depend on the network set-up, so they run
	// while the parent starts the network driver (which may ask us for a
	// tap); joined before the network files are bound over /etc.
	mounts := future.Go(func() (struct{}, error) { return struct{}{}, prepareMounts(cfg) })
	// Whatever ends the set-up, let the mounts finish first: their scratch
	// directories are removed as they complete.
	defer mounts.Wait()
	setup, err := serveUntilNetwork(ctl, worker)
	if errors.Is(err, errParentGone) {
		return nil, 1 // the parent is gone or failed; it reports why
	} else if err != nil {
		return nil, fail(err)
	}
	// Devices and the state-dir files while the mounts finish; the binds
	// over /etc need those.
	// The set-up holds if the driver kept to its prediction and its helper
	// runs on that very device (one that fell back to a tap of its own
	// made a new device, with a new index).
	addressed := preconfigured != 0 && sameSetup(setup, *cfg.PreSetup) && sameLink(worker, cfg.PreTap, preconfigured)
	netErr := configureNet(cfg, setup, worker, addressed)
	_, mountErr := mounts.Wait()
	if err := errors.Join(mountErr, netErr); err != nil {
		return nil, fail(err)
	}
	if err := publishNetFiles(cfg, setup); err != nil {
		return nil, fail(err)
	}
	return worker, 0
}

// finish runs once the command has ended: no helper outlives the init, the
// launcher is told, and the command's status becomes the init's.
func finish(cfg Config, ws syscall.WaitStatus, done *os.File) int {
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
	return exitStatus(cfg, ws)
}

// exitStatus is the init's exit status for the command's wait status,
// reported on stderr as RootlessKit's child does.
func exitStatus(cfg Config, ws syscall.WaitStatus) int {
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

// catchSignals catches signals (as PID 1 we would otherwise ignore them)
// while the set-up runs: Go enables each with a round trip to its signal
// thread. Until then Go's own handler makes a terminating signal end us,
// which is what the relay does too before the command runs; other signals
// that come before the command are dropped. Send the command's PID on
// cmdStarted to have every signal forwarded to it from then on.
func catchSignals() (signals <-chan *sigproxy.Forwarder, cmdStarted chan<- int) {
	caught := make(chan *sigproxy.Forwarder, 1)
	started := make(chan int, 1)
	go func() {
		f := sigproxy.Catch()
		caught <- f
		f.Relay(context.Background(), started, func(s os.Signal) bool {
			if sigproxy.IsTerminating(s) {
				os.Exit(128 + int(s.(syscall.Signal)))
			}
			return false
		})
	}()
	return caught, started
}

// errParentGone: the control connection ended; the parent reports why.
var errParentGone = errors.New("parent gone")

// serveUntilNetwork opens taps for the parent's in-process drivers until
// the parent sends the network set-up.
func serveUntilNetwork(ctl *handshake.Conn, worker *netnsWorker) (network.Setup, error) {
	for {
		m, _, err := ctl.Recv(context.Background())
		if err != nil {
			return network.Setup{}, errParentGone
		}
		switch m.Kind {
		case handshake.OpenTap:
			var tap *os.File
			err := worker.Do(func() (err error) { tap, err = sys.OpenTap(m.TapName, m.VnetHdr); return })
			if err != nil {
				ctl.Send(handshake.ErrorMsg(operr.Wrap(operr.Tun, m.TapName, err)))
				continue
			}
			err = ctl.Send(handshake.Msg{Kind: handshake.Tap}, tap)
			tap.Close()
			if err != nil {
				return network.Setup{}, errParentGone
			}
		case handshake.Network:
			return *m.Setup, nil
		default:
			return network.Setup{}, fmt.Errorf("child: unexpected %s message", m.Kind)
		}
	}
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
