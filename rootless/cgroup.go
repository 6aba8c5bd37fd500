package rootless

import (
	"fmt"
	"path/filepath"

	"github.com/unroot/unroot/internal/procfs"
)

// Cgroup2Warning is the warning when the host does not run the unified
// cgroup hierarchy (k3s's wording).
const Cgroup2Warning = "Enabling cgroup2 is highly recommended, see https://rootlesscontaine.rs/getting-started/common/cgroup2/"

// cgroupHost is what planCgroup needs to know about the host.
type cgroupHost struct {
	selfCgroup []byte // /proc/self/cgroup
	unified    bool   // /sys/fs/cgroup is a cgroup2 mount
	writable   func(dir string) bool
}

// planCgroup decides whether to evacuate into name, and what to warn.
func planCgroup(h cgroupHost, name, daemon string) (evacuate string, warning string) {
	self, ok := procfs.ParseCgroup2(string(h.selfCgroup))
	if !ok || !h.unified {
		return "", Cgroup2Warning
	}
	dir := filepath.Join("/sys/fs/cgroup", self)
	if !h.writable(dir) {
		return "", fmt.Sprintf("cannot evacuate cgroup2 into %s: %s is not writable by you, so cgroup controllers cannot be delegated to %s; run %s as a systemd unit with Delegate=yes", name, dir, daemon, daemon)
	}
	return name, ""
}
