package childinit

// Mounts inside the new mount namespace: the propagation of /, /proc for
// a new PID namespace, copy-up and a sysfs of the new network namespace.

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/unroot/unroot/internal/copyup"
	"github.com/unroot/unroot/internal/operr"
	"github.com/unroot/unroot/internal/sys"
)

// setupNamespaces sets the propagation of / and mounts /proc for a new
// PID namespace: what must be done before NSReady.
func setupNamespaces(cfg Config) error {
	flags, err := PropagationFlags(cfg.Propagation)
	if err != nil {
		return err
	}
	if err := sys.Mount("none", "/", "", flags, ""); err != nil {
		return operr.Errorf(operr.Mount, "/", "set propagation of / to %s: %w", cfg.Propagation, err)
	}
	if cfg.PIDNS {
		const fl = sys.MS_NOSUID | sys.MS_NODEV | sys.MS_NOEXEC
		if err := sys.Mount("proc", "/proc", "proc", fl, ""); err != nil {
			if err2 := sys.Mount("proc", "/proc", "proc", fl|sys.MS_RDONLY, ""); err2 != nil {
				return operr.Errorf(operr.Mount, "/proc", "mount /proc for the new PID namespace: %w (a host /proc with masked or read-only sub-mounts blocks it; run without --pidns)", err)
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
			return operr.Wrap(operr.Mount, d, err)
		}
	}
	if cfg.PrivateNet && !cfg.DetachNetNS {
		return mountSysfs(cfg.Cgroup2, scratch)
	}
	if cfg.Cgroup2 {
		if err := sys.Mount("none", "/sys/fs/cgroup", "cgroup2", 0, ""); err != nil {
			return operr.Errorf(operr.Cgroup, "/sys/fs/cgroup", "mount cgroup2 on /sys/fs/cgroup: %w (--evacuate-cgroup2 needs --cgroupns)", err)
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
					return operr.Errorf(operr.Cgroup, "/sys/fs/cgroup", "keep /sys/fs/cgroup: %w", err)
				}
				defer sys.Unmount(tmp, syscall.MNT_DETACH) // a no-op once moved
				restore = func() error { return sys.Mount(tmp, "/sys/fs/cgroup", "", sys.MS_MOVE, "") }
			}
		}
	}
	if err := sys.Mount("none", "/sys", "sysfs", 0, ""); err != nil {
		if err2 := sys.Mount("none", "/sys", "sysfs", sys.MS_RDONLY, ""); err2 != nil {
			return operr.Errorf(operr.Mount, "/sys", "mount sysfs on /sys for the new network namespace: %w", err)
		}
	}
	if cgroup2 {
		if err := sys.Mount("none", "/sys/fs/cgroup", "cgroup2", 0, ""); err != nil {
			return operr.Errorf(operr.Cgroup, "/sys/fs/cgroup", "mount cgroup2 on /sys/fs/cgroup: %w (--evacuate-cgroup2 needs --cgroupns)", err)
		}
	} else if restore != nil {
		if err := restore(); err != nil {
			return operr.Errorf(operr.Cgroup, "/sys/fs/cgroup", "move cgroup mount back to /sys/fs/cgroup: %w", err)
		}
	}
	return nil
}
