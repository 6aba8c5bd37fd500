// Package childinit is everything that runs inside the namespaces: the
// namespace init that the launcher re-executes itself as. It finishes the
// namespace set-up the parent cannot do from outside (mounts, loopback,
// device addressing, detached netns), starts the command, relays signals to
// it, reaps orphans when it is PID 1, and exits with the command's status.
//
// The child runs in two stages. Stage 1 is the fresh clone, exec'd while
// its ids were still unmapped; it waits for the parent to write the id
// maps. The launcher raises every capability as ambient in the clone, so
// they survive that exec and stage 2 follows in the same process, as uid 0
// with a full capability set over its namespaces. Without them (an exec as
// an unmapped uid drops all capabilities) stage 1 re-executes itself and
// stage 2 starts in the new image.
//
// Files by concern: child.go (the stages, capabilities, the command's
// start), reaper.go (dying with the parent, reaping, killing the tree),
// mounts.go, netns.go (the detached network namespace) and netfiles.go
// (devices, resolv.conf and hosts). config.go is what the launcher sends.
package childinit

import (
	"encoding/base64"
	"fmt"

	"github.com/unroot/unroot/internal/sys"
	"github.com/unroot/unroot/internal/wire"
	"github.com/unroot/unroot/network"
)

// EnvConfig is the variable that carries Config from parent to child. Its
// presence is what makes a process the namespace init; it is removed before
// the command runs.
const EnvConfig = "_UNROOT_CHILD"

// EnvActivation marks the short-lived helper that sets LISTEN_PID to its own
// PID and execs the command (systemd socket activation).
const EnvActivation = "_UNROOT_ACTIVATION"

// Config is what the parent tells the child at spawn time.
type Config struct {
	Stage int
	// CtlFD and SockFD are the inherited socketpair ends.
	CtlFD  int
	SockFD int
	// DoneFD, when not 0, is a pipe the child writes a byte to once the
	// command has ended, before it exits itself.
	DoneFD int
	// CmdFD, when not 0, holds Command (see CommandFile): Encode leaves
	// it out, and Run reads it from there.
	CmdFD int
	// ListenFDs is the number of socket-activation fds at 3.. to pass on.
	ListenFDs int
	// Activation runs the command through the LISTEN_PID helper.
	Activation bool
	// ParentPID is checked after the re-exec (outside a PID namespace) to
	// catch a parent that died before PR_SET_PDEATHSIG was set again.
	ParentPID int

	Command     []string
	StateDir    string
	PIDNS       bool
	Reaper      bool
	PrivateNet  bool
	DetachNetNS bool
	// PreTap names a tap device to create persistent first thing, before
	// the ids are mapped, so the network helper can attach to it while
	// the parent still runs newuidmap. The child reports with TapCreated.
	PreTap string
	// PreSetup, with PreTap, is the network set-up the driver predicted:
	// the child applies it right after creating the tap, and again only if
	// the Network message brings a different one.
	PreSetup    *network.Setup
	Propagation string
	CopyUp      []string
	// Cgroup2 mounts a fresh cgroup2 on /sys/fs/cgroup (--evacuate-cgroup2).
	Cgroup2 bool
	// ErrPrefix starts the child's error lines: "[rootlesskit:child ] " or "unroot: ".
	ErrPrefix string
	// ReportExit prints a line for a non-zero exit status too, as
	// RootlessKit's child does (a signal death is always reported).
	ReportExit bool
	// Bypass installs the socket filter on the command (see bypass.go).
	Bypass BypassMode
	// Forwards are the ports ("tcp/5000", "udp/53") of the reverse
	// forwards: the child makes their listening sockets before the command
	// starts and sends them in a Forwards message (see forward.go).
	Forwards []string
}

// Encode returns the value for EnvConfig.
func (c Config) Encode() string {
	var e wire.Encoder
	for _, v := range []int{c.Stage, c.CtlFD, c.SockFD, c.DoneFD, c.CmdFD, c.ListenFDs, c.ParentPID} {
		e.Int(v)
	}
	for _, v := range []bool{c.Activation, c.PIDNS, c.Reaper, c.PrivateNet, c.DetachNetNS, c.Cgroup2, c.ReportExit} {
		e.Bool(v)
	}
	if c.CmdFD == 0 {
		e.Strings(c.Command)
	} else {
		e.Strings(nil)
	}
	e.String(c.StateDir)
	e.String(c.PreTap)
	e.Setup(c.PreSetup)
	e.String(c.Propagation)
	e.Strings(c.CopyUp)
	e.String(c.ErrPrefix)
	e.Int(int(c.Bypass))
	e.Strings(c.Forwards)
	// The environment holds no NUL bytes.
	return base64.RawStdEncoding.EncodeToString(e.Bytes())
}

// DecodeConfig parses EnvConfig.
func DecodeConfig(s string) (Config, error) {
	var c Config
	b, err := base64.RawStdEncoding.DecodeString(s)
	if err != nil {
		return c, fmt.Errorf("decode %s: %w", EnvConfig, err)
	}
	d := wire.NewDecoder(b)
	for _, v := range []*int{&c.Stage, &c.CtlFD, &c.SockFD, &c.DoneFD, &c.CmdFD, &c.ListenFDs, &c.ParentPID} {
		*v = d.Int()
	}
	for _, v := range []*bool{&c.Activation, &c.PIDNS, &c.Reaper, &c.PrivateNet, &c.DetachNetNS, &c.Cgroup2, &c.ReportExit} {
		*v = d.Bool()
	}
	c.Command = d.Strings()
	c.StateDir = d.String()
	c.PreTap = d.String()
	c.PreSetup = d.Setup()
	c.Propagation = d.String()
	c.CopyUp = d.Strings()
	c.ErrPrefix = d.String()
	c.Bypass = BypassMode(d.Int())
	c.Forwards = d.Strings()
	if err := d.Finish(); err != nil {
		return Config{}, fmt.Errorf("decode %s: %w (the launcher and the init are different binaries? do not replace the binary while it runs)", EnvConfig, err)
	}
	if c.Stage != 1 && c.Stage != 2 {
		return c, fmt.Errorf("decode %s: stage %d, want 1 or 2", EnvConfig, c.Stage)
	}
	if c.CtlFD < 3 || c.SockFD < 3 || c.CtlFD == c.SockFD {
		return c, fmt.Errorf("decode %s: bad fds %d, %d", EnvConfig, c.CtlFD, c.SockFD)
	}
	if c.CmdFD != 0 && (c.CmdFD < 3 || c.CmdFD == c.CtlFD || c.CmdFD == c.SockFD) {
		return c, fmt.Errorf("decode %s: bad command fd %d", EnvConfig, c.CmdFD)
	}
	if (len(c.Command) == 0) == (c.CmdFD == 0) {
		return c, fmt.Errorf("decode %s: no command, or two", EnvConfig)
	}
	return c, nil
}

const (
	msRec     = sys.MS_REC
	msPrivate = sys.MS_PRIVATE
	msSlave   = sys.MS_SLAVE
	msShared  = sys.MS_SHARED
)

// PropagationFlags maps a --propagation value to mount flags.
func PropagationFlags(s string) (uintptr, error) {
	switch s {
	case "", "rprivate":
		return msRec | msPrivate, nil
	case "private":
		return msPrivate, nil
	case "rslave":
		return msRec | msSlave, nil
	case "slave":
		return msSlave, nil
	case "rshared":
		return msRec | msShared, nil
	case "shared":
		return msShared, nil
	}
	return 0, fmt.Errorf("propagation %q: must be one of private, rprivate, slave, rslave, shared, rshared", s)
}
