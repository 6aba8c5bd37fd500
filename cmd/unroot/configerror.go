package main

import (
	"errors"

	"github.com/unroot/unroot"
)

// flagNames spells the Launcher's fields, as unroot.ConfigError names
// them, the way the command line sets them.
var flagNames = map[string]string{
	"Command":             "COMMAND",
	"Reaper=ReaperOn":     "--reaper=true",
	"PIDNS":               "--pidns",
	"CgroupNS":            "--cgroupns",
	"Propagation":         "--propagation",
	"Propagation=rslave":  "--propagation=rslave",
	"Ready":               "--ready",
	"CopyUp":              "--copy-up",
	"EvacuateCgroup2":     "--evacuate-cgroup2",
	"DetachNetNS":         "--detach-netns",
	"Network=private":     "--net=slirp4netns, pasta, netstack or none",
	"Publish":             "--publish",
	"Ports=builtin":       "--port-driver=builtin",
	"StateDir":            "--state-dir",
	"Forward":             "--forward",
	"OnNetworkFailure":    "--on-network-failure",
	"Bypass.Mode":         "--bypass",
	"Bypass.Mode=on":      "--bypass",
	"Bypass.Mode=private": "--net=slirp4netns, pasta or netstack, without --detach-netns",
}

// flagError renders a Launcher's validation error in flags; other errors
// pass unchanged.
func flagError(err error) error {
	var ce *unroot.ConfigError
	if !errors.As(err, &ce) {
		return err
	}
	return errors.New(ce.Text(func(ref string) string {
		if f, ok := flagNames[ref]; ok {
			return f
		}
		return ref
	}))
}
