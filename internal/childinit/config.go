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
package childinit

import (
	"encoding/json"
	"fmt"

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
	Stage int `json:"stage"`
	// CtlFD and SockFD are the inherited socketpair ends.
	CtlFD  int `json:"ctlFD"`
	SockFD int `json:"sockFD"`
	// DoneFD, when not 0, is a pipe the child writes a byte to once the
	// command has ended, before it exits itself.
	DoneFD int `json:"doneFD,omitempty"`
	// ListenFDs is the number of socket-activation fds at 3.. to pass on.
	ListenFDs int `json:"listenFDs,omitempty"`
	// Activation runs the command through the LISTEN_PID helper.
	Activation bool `json:"activation,omitempty"`
	// ParentPID is checked after the re-exec (outside a PID namespace) to
	// catch a parent that died before PR_SET_PDEATHSIG was set again.
	ParentPID int `json:"parentPID"`

	Command     []string `json:"command"`
	StateDir    string   `json:"stateDir"`
	PIDNS       bool     `json:"pidns,omitempty"`
	Reaper      bool     `json:"reaper,omitempty"`
	PrivateNet  bool     `json:"privateNet,omitempty"`
	DetachNetNS bool     `json:"detachNetNS,omitempty"`
	// PreTap names a tap device to create persistent first thing, before
	// the ids are mapped, so the network helper can attach to it while
	// the parent still runs newuidmap. The child reports with TapCreated.
	PreTap string `json:"preTap,omitempty"`
	// PreSetup, with PreTap, is the network set-up the driver predicted:
	// the child applies it right after creating the tap, and again only if
	// the Network message brings a different one.
	PreSetup    *network.Setup `json:"preSetup,omitempty"`
	Propagation string         `json:"propagation,omitempty"`
	CopyUp      []string       `json:"copyUp,omitempty"`
	// Cgroup2 mounts a fresh cgroup2 on /sys/fs/cgroup (--evacuate-cgroup2).
	Cgroup2 bool `json:"cgroup2,omitempty"`
	// ErrPrefix starts the child's error lines: "[rootlesskit:child ] " or "unroot: ".
	ErrPrefix string `json:"errPrefix,omitempty"`
	// ReportExit prints a line for a non-zero exit status too, as
	// RootlessKit's child does (a signal death is always reported).
	ReportExit bool `json:"reportExit,omitempty"`
}

// Encode returns the value for EnvConfig.
func (c Config) Encode() string {
	b, _ := json.Marshal(c)
	return string(b)
}

// DecodeConfig parses EnvConfig.
func DecodeConfig(s string) (Config, error) {
	var c Config
	if err := json.Unmarshal([]byte(s), &c); err != nil {
		return c, fmt.Errorf("decode %s: %w", EnvConfig, err)
	}
	if c.Stage != 1 && c.Stage != 2 {
		return c, fmt.Errorf("decode %s: stage %d, want 1 or 2", EnvConfig, c.Stage)
	}
	if c.CtlFD < 3 || c.SockFD < 3 || c.CtlFD == c.SockFD {
		return c, fmt.Errorf("decode %s: bad fds %d, %d", EnvConfig, c.CtlFD, c.SockFD)
	}
	if len(c.Command) == 0 {
		return c, fmt.Errorf("decode %s: no command", EnvConfig)
	}
	return c, nil
}

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
