package doctor

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/unroot/unroot/internal/procfs"
)

const cgroupRoot = "/sys/fs/cgroup"

// wantControllers are the controllers daemons set limits with.
var wantControllers = []string{"cpu", "cpuset", "io", "memory", "pids"}

const delegateFix = `sudo mkdir -p /etc/systemd/system/user@.service.d
printf '[Service]\nDelegate=cpu cpuset io memory pids\n' | sudo tee /etc/systemd/system/user@.service.d/delegate.conf >/dev/null
sudo systemctl daemon-reload   (then log out and in again)`

func checkCgroup(ctx context.Context, e *env) Result {
	if !isCgroup2(cgroupRoot) {
		mode := "cgroup v1"
		if isCgroup2(filepath.Join(cgroupRoot, "unified")) {
			mode = "hybrid cgroup v1/v2"
		}
		return Result{Status: Warn,
			Detail: mode + ": resource limits for containers inside need cgroup v2 (k3s refuses to start)",
			Fix:    "boot with systemd.unified_cgroup_hierarchy=1: add it to GRUB_CMDLINE_LINUX in /etc/default/grub, run sudo update-grub, reboot"}
	}
	self, _ := readFile("/proc/self/cgroup")
	p, ok := procfs.ParseCgroup2(self)
	if !ok {
		return Result{Status: Warn, Detail: "cgroup v2, but /proc/self/cgroup has no 0:: line"}
	}
	// The delegated subtree is the topmost ancestor this user owns.
	var top string
	for dir := filepath.Join(cgroupRoot, p); strings.HasPrefix(dir, cgroupRoot+"/") || dir == cgroupRoot; dir = filepath.Dir(dir) {
		uid, _, err := ownerOf(dir)
		if err != nil || uid != e.uid {
			break
		}
		top = dir
		if dir == cgroupRoot {
			break
		}
	}
	if top == "" {
		return Result{Status: Warn,
			Detail: fmt.Sprintf("cgroup v2, but your cgroup %s is not delegated to you: limits inside unroot will not apply", p),
			Fix:    "run unroot from a systemd user unit (unroot systemd install …), or on a terminal: systemd-run --user -p Delegate=yes --tty unroot run …"}
	}
	ctrl, _ := readFile(filepath.Join(top, "cgroup.controllers"))
	have := strings.Fields(ctrl)
	var missing []string
	for _, c := range wantControllers {
		if !slices.Contains(have, c) {
			missing = append(missing, c)
		}
	}
	detail := fmt.Sprintf("cgroup v2, %s delegated to you with controllers: %s", strings.TrimPrefix(top, cgroupRoot), strings.Join(have, " "))
	if len(have) == 0 {
		detail = fmt.Sprintf("cgroup v2, %s delegated to you with no controllers", strings.TrimPrefix(top, cgroupRoot))
	}
	if len(missing) > 0 {
		return Result{Status: Warn, Detail: detail + "; missing: " + strings.Join(missing, " "), Fix: delegateFix}
	}
	return Result{Status: OK, Detail: detail}
}

func checkRuntimeDir(ctx context.Context, e *env) Result {
	d := os.Getenv("XDG_RUNTIME_DIR")
	fix := fmt.Sprintf("log in through a PAM session (ssh, or: sudo machinectl shell %s@), not su/sudo; or export XDG_RUNTIME_DIR=/run/user/%d", e.user.Username, e.uid)
	if d == "" {
		return Result{Status: Warn, Detail: "XDG_RUNTIME_DIR is not set: systemctl --user and default state directories will not work", Fix: fix}
	}
	uid, mode, err := ownerOf(d)
	switch {
	case err != nil:
		return Result{Status: Warn, Detail: fmt.Sprintf("XDG_RUNTIME_DIR=%s: %v", d, err), Fix: fix}
	case uid != e.uid:
		return Result{Status: Warn, Detail: fmt.Sprintf("XDG_RUNTIME_DIR=%s belongs to uid %d, not to you (uid %d): usually left over from su or sudo", d, uid, e.uid), Fix: fix}
	case mode.Perm()&0o077 != 0:
		return Result{Status: Warn, Detail: fmt.Sprintf("XDG_RUNTIME_DIR=%s is mode %04o; it should be 0700", d, mode.Perm()), Fix: "chmod 0700 " + d}
	}
	return Result{Status: OK, Detail: "XDG_RUNTIME_DIR=" + d}
}

func checkLinger(ctx context.Context, e *env) Result {
	if _, err := os.Stat("/run/systemd/system"); err != nil {
		return Result{Status: OK, Detail: "systemd is not the init system here: lingering does not apply"}
	}
	if _, err := os.Stat(filepath.Join("/var/lib/systemd/linger", e.user.Username)); err == nil {
		return Result{Status: OK, Detail: "lingering is enabled: user services keep running after logout"}
	}
	return Result{Status: Warn,
		Detail: "lingering is off: systemd stops " + e.user.Username + "'s services (and unroot) at logout and does not start them at boot",
		Fix:    "sudo loginctl enable-linger " + e.user.Username}
}

func checkPorts(ctx context.Context, e *env) Result {
	v, ok := readSysctl("/proc/sys/net/ipv4/ip_unprivileged_port_start")
	if !ok {
		return Result{Status: OK, Detail: "net.ipv4.ip_unprivileged_port_start is not readable; assuming 1024"}
	}
	if v == 0 || e.uid == 0 {
		return Result{Status: OK, Detail: fmt.Sprintf("net.ipv4.ip_unprivileged_port_start = %d: any port can be published", v)}
	}
	return Result{Status: Warn,
		Detail: fmt.Sprintf("net.ipv4.ip_unprivileged_port_start = %d: host ports below %d cannot be published", v, v),
		Fix: sysctlFix("90-unroot-ports.conf", "net.ipv4.ip_unprivileged_port_start", "80") +
			"\n(or only for unroot: sudo setcap cap_net_bind_service=ep " + e.exe + ")"}
}

func checkPing(ctx context.Context, e *env) Result {
	s, err := readFile("/proc/sys/net/ipv4/ping_group_range")
	if err != nil {
		return Result{Status: OK, Detail: "net.ipv4.ping_group_range is not readable"}
	}
	lo, hi, err := parsePingGroupRange(s)
	if err != nil {
		return Result{Status: Warn, Detail: err.Error()}
	}
	if e.uid == 0 || (int64(e.gid) >= lo && int64(e.gid) <= hi) {
		return Result{Status: OK, Detail: fmt.Sprintf("net.ipv4.ping_group_range = %d %d: ping works", lo, hi)}
	}
	return Result{Status: Warn,
		Detail: fmt.Sprintf("net.ipv4.ping_group_range = %d %d excludes your gid %d: ping fails with host networking and from the host side", lo, hi, e.gid),
		Fix:    sysctlFix("90-unroot-ping.conf", "net.ipv4.ping_group_range", "0 2147483647")}
}
