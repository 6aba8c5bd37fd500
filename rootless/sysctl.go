package rootless

import (
	"fmt"
	"os"
	"strings"
)

// Sysctl is a kernel setting the profile needs, checked before any
// namespace is made.
type Sysctl struct {
	Key   string // dotted, e.g. "kernel.unprivileged_userns_clone"
	Value string
}

// CheckSysctls returns an error for the first setting whose value differs.
// A setting the kernel does not have is skipped: it means the feature is
// not gated there. read is usually ReadSysctl.
func CheckSysctls(want []Sysctl, read func(key string) (string, error)) error {
	for _, s := range want {
		got, err := read(s.Key)
		if err != nil {
			continue
		}
		if got != s.Value {
			return fmt.Errorf("expected sysctl value %q to be %q, got %q; try adding \"%s=%s\" to /etc/sysctl.conf and running `sudo sysctl --system`",
				s.Key, s.Value, got, s.Key, s.Value)
		}
	}
	return nil
}

// ReadSysctl reads a setting from /proc/sys of the caller's namespaces.
func ReadSysctl(key string) (string, error) {
	b, err := os.ReadFile("/proc/sys/" + strings.ReplaceAll(key, ".", "/"))
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}
