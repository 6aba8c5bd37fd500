// Package cgroup evacuates the launcher's cgroup v2 group into a child
// group (--evacuate-cgroup2), so that the group becomes an inner node whose
// controllers can be delegated to the namespace (cgroup v2 forbids
// processes in inner nodes: "no internal processes").
package cgroup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/unroot/unroot/internal/operr"
	"github.com/unroot/unroot/internal/procfs"
)

// ErrNoCgroup2 means the host has no cgroup v2 hierarchy mounted; the
// launcher warns and goes on without evacuating, as RootlessKit does.
var ErrNoCgroup2 = errors.New("no cgroup2 file system is mounted (the host uses cgroup v1); --evacuate-cgroup2 has nothing to do")

// MountInfo is read to find the cgroup2 mount; a variable for tests.
var MountInfo = "/proc/self/mountinfo"

// ParseCgroup2Mount returns the mount point of the first cgroup2 file
// system in /proc/PID/mountinfo content ("" if there is none).
func ParseCgroup2Mount(mountinfo string) string {
	for _, line := range strings.Split(mountinfo, "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		pf, qf := strings.Fields(pre), strings.Fields(post)
		if len(pf) >= 5 && len(qf) >= 1 && qf[0] == "cgroup2" {
			return unescapeOctal(pf[4])
		}
	}
	return ""
}

// unescapeOctal undoes mountinfo's \NNN escapes (space, tab, newline, backslash).
func unescapeOctal(s string) string {
	if !strings.Contains(s, "\\") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1:i+4]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(s string) bool {
	if len(s) != 3 {
		return false
	}
	for i := range 3 {
		if s[i] < '0' || s[i] > '7' {
			return false
		}
	}
	return s[0] <= '3'
}

// ValidateName checks an --evacuate-cgroup2 name.
func ValidateName(name string) error {
	if name == "" || strings.ContainsAny(name, "/") || name == "." || name == ".." {
		return fmt.Errorf("evacuate-cgroup2 %q: must be a plain name like \"evac\", without /", name)
	}
	return nil
}

// Evacuate moves every process of the caller's cgroup into its subgroup
// name and enables all available controllers for the subtree. Its errors
// are operr.Cgroup; ErrNoCgroup2 says there is nothing to do.
func Evacuate(name string) error {
	return operr.Wrap(operr.Cgroup, name, evacuate(name))
}

func evacuate(name string) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	self, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return fmt.Errorf("evacuate cgroup2: %w", err)
	}
	rel, ok := procfs.ParseCgroup2(string(self))
	if !ok {
		return errors.New("evacuate cgroup2: no cgroup v2 (0::) line in /proc/self/cgroup: the host uses cgroup v1 only; --evacuate-cgroup2 needs the unified hierarchy")
	}
	mi, err := os.ReadFile(MountInfo)
	if err != nil {
		return fmt.Errorf("evacuate cgroup2: %w", err)
	}
	root := ParseCgroup2Mount(string(mi))
	if root == "" {
		return ErrNoCgroup2
	}
	group := filepath.Join(root, rel)
	evac := filepath.Join(group, name)
	if err := os.Mkdir(evac, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("evacuate cgroup2: create %s: %w (is the group delegated to you? run under `systemd-run --user -p Delegate=yes`)", evac, err)
	}
	procs, err := os.ReadFile(filepath.Join(group, "cgroup.procs"))
	if err != nil {
		return fmt.Errorf("evacuate cgroup2: %w", err)
	}
	for _, pid := range strings.Fields(string(procs)) {
		// A process may exit between the read and the move; ESRCH is fine.
		if err := os.WriteFile(filepath.Join(evac, "cgroup.procs"), []byte(pid), 0); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("evacuate cgroup2: move pid %s to %s: %w", pid, evac, err)
		}
	}
	ctrls, err := os.ReadFile(filepath.Join(group, "cgroup.controllers"))
	if err != nil {
		return fmt.Errorf("evacuate cgroup2: %w", err)
	}
	for _, c := range strings.Fields(string(ctrls)) {
		if err := os.WriteFile(filepath.Join(group, "cgroup.subtree_control"), []byte("+"+c), 0); err != nil {
			return fmt.Errorf("evacuate cgroup2: enable controller %s in %s: %w", c, group, err)
		}
	}
	return nil
}
