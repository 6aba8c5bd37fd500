package unroot

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/unroot/unroot/internal/cgroup"
	"github.com/unroot/unroot/internal/childinit"
	"github.com/unroot/unroot/internal/future"
	"github.com/unroot/unroot/internal/handshake"
	"github.com/unroot/unroot/internal/idmap"
	"github.com/unroot/unroot/internal/notify"
	"github.com/unroot/unroot/internal/sigproxy"
	"github.com/unroot/unroot/internal/sockpool"
	"github.com/unroot/unroot/internal/spawn"
	"github.com/unroot/unroot/internal/statedir"
	"github.com/unroot/unroot/internal/sys"
	"github.com/unroot/unroot/network"
	"github.com/unroot/unroot/port"
)

// startup is one run of Launcher.Start. Its methods are the stages, run in
// the order run lists them; what a stage hands to a later one is a field,
// and work that overlaps later stages is a Future named for what it
// carries, started and joined where run's comments say.
type startup struct {
	l   *Launcher
	ctx context.Context // the caller's: bounds Start, not the run
	t0  time.Time
	// initCtx ends when the namespace init exits or a terminating signal
	// aborts the start: every wait on the init uses it.
	initCtx context.Context
	cancel  context.CancelCauseFunc

	statePath  string
	createdDir bool
	pre        network.PreTap // the driver's tap and set-up prediction
	plan       idmap.Plan     // valid once prepared is joined
	apiLn      *apiListener   // valid once prepared is joined

	// The overlaps, in the order they start.
	signals      <-chan *sigproxy.Forwarder    // every signal caught
	prepared     *future.Future[prepared]      // ids looked up, state directory locked, api.sock bound
	joined       bool                          // prepared has been joined
	predictedDNS []netip.Addr                  // what netFiles writes
	netFiles     *future.Future[struct{}]      // resolv.conf and hosts from the prediction
	netSetup     *future.Future[network.Setup] // the network driver's start
	cmdRunning   chan int                      // the signal relay's target, once the command runs
	// The seccomp listener that came with Started (--bypass), or why none
	// did; startBypass keeps a copy, end closes these.
	bypassFiles  []*os.File
	forwardFiles []*os.File // the listening sockets of Launcher.Forward, from the init
	bypassWhyOff string
}

// prepared is what the state directory's preparation hands on.
type prepared struct {
	plan  idmap.Plan
	dir   *statedir.Dir
	apiLn *apiListener
}

// run is the start-up on one screen.
func (s *startup) run() error {
	// Overlap: signals are caught while the init is cloned (catching
	// costs a thread and a round trip per signal); joined by relaySignals.
	// One that comes sooner has its default effect: it ends the launcher,
	// and the init dies with it.
	s.signals = sigproxy.CatchAsync()
	// Overlap: ids looked up, state directory locked and wiped, api.sock
	// bound, alongside the clone; joined by joinPrepared.
	if err := s.prepareStateDir(); err != nil {
		return err
	}
	if err := s.startNotify(); err != nil {
		return err
	}
	if err := s.spawn(); err != nil {
		return err
	}
	if err := s.joinPrepared(); err != nil {
		return err
	}
	s.relaySignals()
	// Overlap: resolv.conf and hosts from the driver's prediction; joined
	// by startNetwork.
	s.writePredictedNetFiles()
	// Overlap: the init's report on the tap it pre-creates; joined by
	// waitNamespaces (and by the driver, through waitPreTap).
	s.watchTap()
	// Overlap: the network driver starts in mapIDs (when it needs nothing
	// from the mapping, before or right after newuidmap), else in
	// startNetwork; joined by startNetwork.
	if err := s.mapIDs(); err != nil {
		return err
	}
	if err := s.waitNamespaces(); err != nil {
		return err
	}
	setup, err := s.startNetwork()
	if err != nil {
		return err
	}
	if err := s.startCommand(setup); err != nil {
		return err
	}
	s.watchNetwork()
	if err := s.publish(setup); err != nil {
		return err
	}
	// Notifications of binds the command made meanwhile wait in the
	// filter's queue: the ports they may match are published now.
	if err := s.l.startBypass(s.bypassFiles, s.bypassWhyOff, setup); err != nil {
		return err
	}
	if err := s.l.startForwards(s.ctx, s.forwardFiles); err != nil {
		return err
	}
	return s.serveAPI()
}

func (s *startup) mark(stage string) {
	s.l.log.Debug("start: "+stage, "elapsed", time.Since(s.t0))
}

// end joins every overlap still under way and, when the start failed,
// tears down what it made. Its steps run in this order: the state
// directory is not removed under a writer, a directory the lookup locked is
// released, and the API socket is closed before the directory goes, so it
// cannot reappear in a removed state directory.
func (s *startup) end(err *error) {
	l := s.l
	closeFiles(s.bypassFiles)
	closeFiles(s.forwardFiles)
	s.netFiles.Wait()
	if s.cancel != nil {
		s.cancel(*err)
	}
	if *err != nil {
		// The driver's start ends with initCtx; its helper is stopped by
		// the teardown below, which must not run alongside the start.
		s.netSetup.Wait()
	}
	if jerr := s.joinPrepared(); *err == nil {
		*err = jerr
	}
	if l.api == nil && s.apiLn != nil {
		s.apiLn.close()
	}
	if *err != nil {
		l.teardown()
	}
	if l.sigs == nil {
		// Start failed before taking them: release them again.
		go func() { (<-s.signals).Stop() }()
	}
}

// fail turns a set-up failure into the clearest error (see startErr).
func (s *startup) fail(err error) error { return s.l.startErr(s.initCtx, err) }

// prepareStateDir resolves the state directory and starts its preparation:
// the subordinate id lookup, the directory's lock and wipe and the API
// socket. The init touches nothing in the directory before the launcher,
// holding the lock, tells it the network is up.
func (s *startup) prepareStateDir() error {
	l := s.l
	var err error
	s.statePath, s.createdDir, err = statedir.Resolve(l.StateDir)
	if err != nil {
		return err
	}
	s.prepared = future.Go(func() (p prepared, err error) {
		p.plan, err = idmap.Lookup(s.ctx, idmap.Source(l.SubIDSource), identity())
		if err == nil {
			err = p.plan.CheckHelpers()
		}
		if err != nil {
			return p, err
		}
		if p.plan.Warning != "" {
			l.log.Warn(p.plan.Warning)
		}
		s.mark("subordinate ids looked up")
		if p.dir, err = statedir.Open(s.statePath); err != nil {
			return p, err
		}
		s.mark("state directory locked")
		p.apiLn = l.listenAPI(p.dir.Join(statedir.APISock))
		return p, nil
	})
	return nil
}

// joinPrepared waits for prepareStateDir's work; once only.
func (s *startup) joinPrepared() error {
	if s.joined {
		return nil
	}
	s.joined = true
	p, err := s.prepared.Wait()
	if err != nil {
		if s.createdDir {
			os.Remove(s.statePath)
		}
		return err
	}
	s.plan, s.l.dir, s.apiLn = p.plan, p.dir, p.apiLn
	return nil
}

// startNotify starts the sd_notify relay under systemd. Its socket lives in
// the state directory and the command's environment names it, so there the
// clone waits for the directory.
func (s *startup) startNotify() error {
	l := s.l
	up := notify.Upstream()
	if up == "" {
		return nil
	}
	if err := s.joinPrepared(); err != nil {
		return err
	}
	mode, _ := notify.ParseMode(l.Ready) // checked by Validate
	r, err := notify.New(notify.Config{Path: l.dir.Join("notify.sock"), Upstream: up, Mode: mode, Logger: l.log})
	if err == nil {
		err = r.Start(s.ctx)
	}
	if err != nil {
		// Not fatal: the command keeps systemd's own NOTIFY_SOCKET,
		// which works when the unit has NotifyAccess=all.
		l.log.Warn(err.Error() + "; the command notifies systemd directly, which needs NotifyAccess=all")
	} else {
		l.notify = r
	}
	return nil
}

// spawn clones the namespace init with its sockets and starts the two
// goroutines that live as long as it: one waits for its exit, one releases
// the drivers and the state directory as soon as the command has ended.
func (s *startup) spawn() error {
	l := s.l
	s.initCtx, s.cancel = context.WithCancelCause(s.ctx)
	ctl, ctlChild, err := handshake.Pair()
	if err != nil {
		return err
	}
	l.ctl = ctl
	sock, sockChild, err := handshake.Pair()
	if err != nil {
		ctlChild.Close()
		return err
	}
	// The init writes a byte here once the command has ended, before its
	// own exit (tearing down its namespaces) takes its time: the drivers
	// stop and the state directory goes meanwhile.
	doneR, doneW, err := os.Pipe()
	if err != nil {
		ctlChild.Close()
		sockChild.Close()
		return err
	}
	// The command goes in a file of its own: in the environment it would
	// be one string, which Linux limits to 128 KiB.
	cmdFile, err := childinit.CommandFile(l.Command)
	if err != nil {
		ctlChild.Close()
		sockChild.Close()
		doneR.Close()
		doneW.Close()
		return err
	}
	l.sockets = sockpool.NewClient(sock)
	// A driver whose helper attaches to a tap by name gets it pre-created by
	// the child before the id mapping; a driver that needs nothing from the
	// mapping then starts right after the clone, alongside newuidmap.
	if tp, ok := l.Network.(network.TapPrecreator); ok && l.privateNet() && !l.DetachNetNS {
		s.pre = tp.PreTap()
		l.preTap = s.pre.Name
	}
	files := append(append([]*os.File{}, l.ListenFDs...), ctlChild, sockChild, doneW, cmdFile)
	so := spawn.Options{
		Args:       initArgs(),
		Env:        s.initEnv(),
		ExtraFiles: files,
		Stdin:      l.Stdin, Stdout: l.Stdout, Stderr: l.Stderr,
		Cloneflags:  l.cloneflags(),
		AmbientCaps: sys.AllCaps(),
	}
	// With ambient capabilities the init needs no re-exec to regain them
	// (one Go start-up less); a kernel that refuses them gets the re-exec.
	l.cmd, err = spawn.Start(so)
	if err != nil {
		so.AmbientCaps = nil
		l.cmd, err = spawn.Start(so)
	}
	// The child holds its ends now; ours must go so its death reads as EOF.
	ctlChild.Close()
	sockChild.Close()
	doneW.Close()
	cmdFile.Close()
	if err != nil {
		doneR.Close()
		return err
	}
	s.mark("namespace init spawned")
	l.childPID = l.cmd.Process.Pid
	l.wg.Add(2)
	go func() {
		defer l.wg.Done()
		l.waitErr = l.cmd.Wait()
		close(l.exited)
		s.cancel(errChildExited)
	}()
	go func() {
		defer l.wg.Done()
		l.releaseWhenDone(doneR)
	}()
	return nil
}

// initEnv is the init's environment: the command's, and the init's
// configuration.
func (s *startup) initEnv() []string {
	l := s.l
	prefix := l.ChildErrorPrefix
	if prefix == "" {
		prefix = "unroot: "
	}
	cfg := childinit.Config{
		Stage:       1,
		ListenFDs:   len(l.ListenFDs),
		CtlFD:       3 + len(l.ListenFDs),
		SockFD:      4 + len(l.ListenFDs),
		DoneFD:      5 + len(l.ListenFDs),
		CmdFD:       6 + len(l.ListenFDs),
		Activation:  l.ActivationPID && len(l.ListenFDs) > 0,
		ParentPID:   os.Getpid(),
		Command:     l.Command,
		StateDir:    s.statePath,
		PIDNS:       l.PIDNS,
		Reaper:      l.reaper(),
		PrivateNet:  l.privateNet(),
		DetachNetNS: l.DetachNetNS,
		PreTap:      l.preTap,
		PreSetup:    s.pre.Setup,
		Propagation: l.Propagation,
		CopyUp:      l.CopyUp,
		Cgroup2:     l.EvacuateCgroup2 != "",
		ErrPrefix:   prefix,
		ReportExit:  l.ChildReportsExit,
		Bypass:      l.childBypass(),
		Forwards:    l.forwardPorts(),
	}
	env := append(os.Environ(), l.Env...)
	env = append(env,
		"ROOTLESSKIT_STATE_DIR="+s.statePath,
		"ROOTLESSKIT_PARENT_EUID="+strconv.Itoa(os.Geteuid()),
		"ROOTLESSKIT_PARENT_EGID="+strconv.Itoa(os.Getegid()),
		childinit.EnvConfig+"="+cfg.Encode(),
	)
	if l.notify != nil {
		env = l.notify.CommandEnv(env)
	}
	return env
}

// initArgs is the namespace init's argv: this process's, so that ps shows
// the init as the launcher, unless it is long. The command is in it too,
// and the init's exec counts argv and environment together against one
// limit; the kernel accepted that command line once, for the launcher, but
// need not accept it again with the init's configuration added.
func initArgs() []string {
	n := 0
	for _, a := range os.Args {
		n += len(a) + 1
	}
	if n > 16<<10 {
		return os.Args[:1]
	}
	return os.Args
}

// releaseWhenDone releases the drivers and the state directory once the
// init reports on done that the command has ended, overlapping the init's
// own exit. EOF (the init died or Start failed) needs nothing: teardown
// releases everything once the init is gone.
func (l *Launcher) releaseWhenDone(done *os.File) {
	defer done.Close()
	if n, _ := done.Read(make([]byte, 1)); n == 1 {
		select {
		case <-l.startOK:
			l.release()
		case <-l.exited:
		}
	}
}

// relaySignals takes the caught signals and relays them until Close. Until
// the command runs, a terminating signal aborts the start and any other is
// dropped with a warning (sigproxy.StartupPolicy): delivered right after
// the exec, it would kill or reach the command at random, before or after
// the command's handler exists.
func (s *startup) relaySignals() {
	l := s.l
	l.sigs = <-s.signals
	sigCtx, stopSigs := context.WithCancel(context.Background())
	l.stopSigs = stopSigs
	s.cmdRunning = make(chan int, 1)
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		l.sigs.Relay(sigCtx, s.cmdRunning, sigproxy.StartupPolicy(l.log, func(sig os.Signal) {
			s.cancel(&interruptedError{sig})
		}))
	}()
}

// writePredictedNetFiles writes resolv.conf and hosts for the namespace
// from the driver's prediction while its helper starts (startNetwork
// rewrites them if the driver ends up with other servers).
func (s *startup) writePredictedNetFiles() {
	l := s.l
	if l.Network == nil || !l.privateNet() || s.pre.Setup == nil || len(s.pre.Setup.DNS) == 0 {
		return
	}
	s.predictedDNS = s.pre.Setup.DNS
	s.netFiles = future.Go(func() (struct{}, error) {
		return struct{}{}, l.dir.WriteNetFiles(s.predictedDNS)
	})
}

// watchTap reads the init's report on the tap it pre-creates. Until it
// is read, ctl is this future's; waitNamespaces joins it before reading
// ctl again.
func (s *startup) watchTap() {
	l := s.l
	if l.preTap == "" {
		return
	}
	l.tap = future.Go(func() (bool, error) {
		m, _, err := l.ctl.Expect(s.initCtx, handshake.TapCreated)
		if err == nil && m.Err != "" {
			err = errors.New(m.Err)
		}
		if err != nil {
			l.log.Debug("tap not pre-created; the network driver makes its own", "tap", l.preTap, "err", err)
			return false, nil
		}
		s.mark("tap pre-created")
		return true, nil
	})
}

// earlyNetwork: the network namespace exists from the clone on, so the
// driver can start while the ids are mapped (when it needs nothing from
// the mapping) or else while the init mounts /proc. A detached netns is
// made by the init, and cgroup evacuation must come first, so those start
// after the namespaces are ready.
func (s *startup) earlyNetwork() bool {
	l := s.l
	return l.Network != nil && l.privateNet() && !l.DetachNetNS && l.EvacuateCgroup2 == ""
}

// goNetwork starts the network driver; startNetwork joins it.
func (s *startup) goNetwork() {
	l := s.l
	l.netUp = true
	child := l.networkChild()
	s.netSetup = future.Go(func() (network.Setup, error) {
		return l.Network.Start(s.initCtx, child)
	})
}

// mapIDs writes the init's uid and gid maps (newuidmap, newgidmap) and
// tells it so.
func (s *startup) mapIDs() error {
	l := s.l
	early := s.earlyNetwork()
	if early && s.pre.BeforeIDMap {
		s.goNetwork()
	}
	if err := s.plan.Apply(s.initCtx, l.childPID); err != nil {
		return s.fail(err)
	}
	s.mark("ids mapped")
	if err := l.ctl.Send(handshake.Msg{Kind: handshake.IDMapped}); err != nil {
		return s.fail(err)
	}
	if early && s.netSetup == nil {
		s.goNetwork()
	}
	return nil
}

// waitNamespaces waits for the init's namespaces (/proc mounted, the
// detached netns made) and evacuates the cgroup.
func (s *startup) waitNamespaces() error {
	l := s.l
	l.tap.Wait()
	_, _, err := l.ctl.Expect(s.initCtx, handshake.NSReady)
	// The driver may ask for a tap over ctl only from now on: until NSReady
	// this stage was the one reading it.
	close(l.nsReady)
	if err != nil {
		return s.fail(err)
	}
	s.mark("namespaces ready")
	if l.EvacuateCgroup2 != "" {
		if err := cgroup.Evacuate(l.EvacuateCgroup2); errors.Is(err, cgroup.ErrNoCgroup2) {
			l.log.Warn(err.Error())
		} else if err != nil {
			return err
		}
	}
	return nil
}

// startNetwork starts the network driver unless mapIDs did, waits for it,
// and makes resolv.conf and hosts name the servers it ended up with.
func (s *startup) startNetwork() (network.Setup, error) {
	l := s.l
	setup := network.Setup{}
	if l.Network != nil {
		if s.netSetup == nil {
			s.goNetwork()
		}
		var err error
		if setup, err = s.netSetup.Wait(); err != nil {
			return setup, s.fail(fmt.Errorf("start network driver %s: %w", l.Network.Name(), err))
		}
	}
	s.mark("network driver started")
	written := false
	if s.netFiles != nil {
		_, err := s.netFiles.Wait()
		written = err == nil && slices.Equal(s.predictedDNS, setup.DNS)
	}
	if !written && l.Network != nil && l.privateNet() && len(setup.DNS) > 0 {
		if err := l.dir.WriteNetFiles(setup.DNS); err != nil {
			return setup, err
		}
	}
	return setup, nil
}

// startCommand hands the init the network set-up, on which it configures
// the devices and starts the command.
func (s *startup) startCommand(setup network.Setup) error {
	l := s.l
	if err := l.ctl.Send(handshake.Msg{Kind: handshake.Network, Setup: &setup}); err != nil {
		return s.fail(err)
	}
	if len(l.Forward) > 0 {
		// The init makes the forwards' sockets before the command starts.
		_, files, err := l.ctl.Expect(s.initCtx, handshake.Forwards)
		if err != nil {
			return s.fail(err)
		}
		s.forwardFiles = files
	}
	m, files, err := l.ctl.Expect(s.initCtx, handshake.Started)
	if err != nil {
		return s.fail(err)
	}
	s.bypassFiles, s.bypassWhyOff = files, m.Err
	s.mark("command started")
	l.cmdPID = m.PID
	s.cmdRunning <- l.childPID
	return nil
}

// publish makes the port driver and publishes Publish. From here the
// command's end, and so the init's, is no set-up failure: Wait reports it.
// The rest of the set-up runs under the caller's ctx, which the init's
// exit does not end.
func (s *startup) publish(setup network.Setup) error {
	l := s.l
	if l.Ports != nil {
		env := port.Env{
			StateDir: l.dir.Path(),
			Logger:   l.log.With("component", "port"),
		}
		if l.privateNet() {
			env.Sockets = l.sockets
			env.Network = l.Network
			if setup.Addr.IsValid() {
				env.ChildIP = setup.Addr.Addr()
			}
		}
		var err error
		l.portDrv, err = l.Ports(s.ctx, env)
		if err != nil {
			return err
		}
		for _, p := range l.Publish {
			if _, err := l.portDrv.Add(s.ctx, p); err != nil {
				return fmt.Errorf("publish %s: %w", p, err)
			}
		}
	}
	s.mark("ports published")
	return nil
}

// serveAPI serves STATE/api.sock and then writes STATE/child_pid: scripts
// take child_pid as the signal that everything, the API included, is
// ready.
func (s *startup) serveAPI() error {
	l := s.l
	ln, err := s.apiLn.take()
	if err != nil {
		return err
	}
	l.api, err = l.serveAPI(ln)
	if err != nil {
		ln.Close()
		return err
	}
	if err := l.dir.WriteChildPID(l.childPID); err != nil {
		return err
	}
	if l.Ready == string(notify.ModePorts) {
		var err error
		if l.notify != nil {
			err = l.notify.Ready("namespaces, network and ports are up")
		} else {
			_, err = notify.Ready()
		}
		if err != nil {
			l.log.Warn(err.Error())
		}
	}
	// A terminating signal that came between the command's start and the
	// relay's learning of it cancelled a start that no longer waited on
	// anything.
	var ie *interruptedError
	if errors.As(context.Cause(s.initCtx), &ie) {
		return ie
	}
	close(l.startOK)
	s.mark("api.sock served, child_pid written")
	l.log.Debug("started", "childPID", l.childPID, "commandPID", l.cmdPID, "stateDir", l.dir.Path())
	return nil
}
