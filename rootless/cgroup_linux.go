package rootless

import (
	"os"
	"syscall"
)

const cgroup2Magic = 0x63677270

func hostCgroup() cgroupHost {
	b, _ := os.ReadFile("/proc/self/cgroup")
	var st syscall.Statfs_t
	unified := syscall.Statfs("/sys/fs/cgroup", &st) == nil && st.Type == cgroup2Magic
	return cgroupHost{
		selfCgroup: b,
		unified:    unified,
		// W_OK for the real ids is what decides whether we may create the
		// evacuation group and move processes there.
		writable: func(dir string) bool { return syscall.Access(dir, 2) == nil },
	}
}
