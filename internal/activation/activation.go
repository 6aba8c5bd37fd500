// Package activation passes systemd socket activation through unroot to the
// command inside the namespaces (sd_listen_fds(3), contract §5.11).
//
// systemd hands unroot listening sockets at fds 3..3+N-1 with LISTEN_FDS=N
// and LISTEN_PID=<unroot's pid>. The command checks LISTEN_PID against its own
// pid, which it only learns after fork — and Go's exec cannot set an
// environment variable between fork and exec. So the namespace init starts
// the command through a tiny re-exec of the unroot binary, the "activation
// helper": it sets LISTEN_PID to its own pid and execs the command, keeping
// that pid and the fds.
//
// Call sites, in order:
//
//	parent, before anything else opens files:  set, err := activation.FromEnv()
//	parent, spawning the namespace init:       ExtraFiles = append(set.Files(), ctl, sock...);
//	                                           Env = set.ChildEnv(env)
//	namespace init, before using fds:          set := activation.Inherited()
//	namespace init, starting the command:      set.Wrap(cmd)
//	top of main (unroot.Init does it):         if activation.Main() { unreachable }
package activation

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
)

// FirstFD is where sd_listen_fds(3) puts the first socket.
const FirstFD = 3

const (
	// inheritedEnv tells the namespace init how many fds from 3 on are
	// systemd's sockets; it never reaches the command.
	inheritedEnv = "_UNROOT_LISTEN_FDS"
	// helperEnv makes the binary act as the activation helper.
	helperEnv = "_UNROOT_ACTIVATION_HELPER"
)

// Set is the sockets systemd passed, in order. A nil *Set means no socket
// activation; every method accepts it.
type Set struct {
	files []*os.File
	names []string
}

// Parse reads the sd_listen_fds variables for the process pid. It returns
// n = 0 when they are absent or meant for another process (LISTEN_PID names
// a different pid), which is not an error.
func Parse(listenPID, listenFDs, fdNames string, pid int) (n int, names []string, err error) {
	if listenPID == "" || listenFDs == "" {
		return 0, nil, nil
	}
	p, err := strconv.Atoi(listenPID)
	if err != nil || p <= 0 {
		return 0, nil, fmt.Errorf("parse LISTEN_PID %q: not a pid", listenPID)
	}
	if p != pid {
		return 0, nil, nil
	}
	n, err = strconv.Atoi(listenFDs)
	if err != nil || n < 0 {
		return 0, nil, fmt.Errorf("parse LISTEN_FDS %q: not a count", listenFDs)
	}
	if n > 1024 {
		return 0, nil, fmt.Errorf("parse LISTEN_FDS %q: more than 1024 sockets", listenFDs)
	}
	if fdNames != "" && n > 0 {
		names = strings.Split(fdNames, ":")
		if len(names) != n {
			// systemd always sends one name per fd; a mismatch means the
			// variable is stale, so names are dropped rather than misassigned.
			names = nil
		}
	}
	return n, names, nil
}

// FromEnv picks up the sockets systemd passed to this process. It marks them
// close-on-exec so that helpers (newuidmap, slirp4netns) don't inherit them;
// ExtraFiles reopens them for the namespace init. It returns nil, nil when
// the process was not socket-activated.
func FromEnv() (*Set, error) {
	n, names, err := Parse(os.Getenv("LISTEN_PID"), os.Getenv("LISTEN_FDS"), os.Getenv("LISTEN_FDNAMES"), os.Getpid())
	if err != nil || n == 0 {
		return nil, err
	}
	s := &Set{names: names}
	for i := range n {
		fd := FirstFD + i
		if _, err := fcntlGetfd(fd); err != nil {
			return nil, fmt.Errorf("socket activation fd %d: %w: LISTEN_FDS=%d but the fd is not open", fd, err, n)
		}
		syscall.CloseOnExec(fd)
		s.files = append(s.files, os.NewFile(uintptr(fd), fmt.Sprintf("listen-fd-%d", fd)))
	}
	return s, nil
}

// Files returns the sockets in order; put them first in the namespace init's
// ExtraFiles so that they land on fds 3..3+N-1 there too.
func (s *Set) Files() []*os.File {
	if s == nil {
		return nil
	}
	return s.files
}

// Len is the number of sockets.
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	return len(s.files)
}

// ChildEnv returns env for the namespace init: the sd_listen_fds variables
// are replaced by the internal count (the init is not the command, so
// nothing in it must mistake the sockets for its own).
func (s *Set) ChildEnv(env []string) []string {
	out := withoutListenVars(env)
	if s.Len() == 0 {
		return out
	}
	out = append(out, inheritedEnv+"="+strconv.Itoa(len(s.files)))
	if s.names != nil {
		out = append(out, inheritedEnv+"_NAMES="+strings.Join(s.names, ":"))
	}
	return out
}

// Inherited is FromEnv for the namespace init: it takes the sockets the
// parent passed at fds 3.. and removes the internal variables from this
// process's environment. It returns nil when there are none. The init's own
// fds that follow the sockets (ctl, sock) must be close-on-exec, or they leak
// into the command.
func Inherited() *Set {
	v, ok := os.LookupEnv(inheritedEnv)
	if !ok {
		return nil
	}
	names := os.Getenv(inheritedEnv + "_NAMES")
	os.Unsetenv(inheritedEnv)
	os.Unsetenv(inheritedEnv + "_NAMES")
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		return nil
	}
	s := &Set{}
	if names != "" {
		s.names = strings.Split(names, ":")
	}
	for i := range n {
		fd := FirstFD + i
		syscall.CloseOnExec(fd)
		s.files = append(s.files, os.NewFile(uintptr(fd), fmt.Sprintf("listen-fd-%d", fd)))
	}
	return s
}

// Wrap makes cmd start through the activation helper with the sockets at fds
// 3..: the helper sets LISTEN_PID to the command's own pid and execs it.
// cmd.Path must already be resolved (exec.Command does it); cmd.Env nil
// means this process's environment. Existing ExtraFiles move up after the
// sockets. Call it last, after cmd is otherwise configured.
func (s *Set) Wrap(cmd *exec.Cmd) error {
	if s.Len() == 0 {
		return nil
	}
	if cmd.Err != nil {
		return cmd.Err
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("socket activation: find own binary for the helper: %w", err)
	}
	env := cmd.Env
	if env == nil {
		env = os.Environ()
	}
	env = withoutListenVars(env)
	env = append(env, helperEnv+"=1", "LISTEN_FDS="+strconv.Itoa(len(s.files)))
	if s.names != nil {
		env = append(env, "LISTEN_FDNAMES="+strings.Join(s.names, ":"))
	}
	cmd.Env = env
	cmd.Args = append([]string{"activation_helper", cmd.Path}, cmd.Args...)
	cmd.Path = self
	cmd.ExtraFiles = append(append([]*os.File{}, s.files...), cmd.ExtraFiles...)
	return nil
}

// Close closes the sockets in this process (after the child has them).
func (s *Set) Close() error {
	var errs []error
	for _, f := range s.Files() {
		errs = append(errs, f.Close())
	}
	return errors.Join(errs...)
}

func withoutListenVars(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", inheritedEnv, inheritedEnv + "_NAMES", helperEnv:
			continue
		}
		out = append(out, kv)
	}
	return out
}

// Main is the activation helper. Call it first thing in main (unroot.Init
// does): it returns false in every other process. In the helper it sets
// LISTEN_PID to its own pid and replaces itself with the command, so it
// returns only if exec fails, after printing why and exiting 1.
func Main() bool {
	if os.Getenv(helperEnv) != "1" {
		return false
	}
	os.Unsetenv(helperEnv)
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "[rootlesskit:activation_helper] error: no command to run: this process is started by unroot only")
		os.Exit(1)
	}
	os.Setenv("LISTEN_PID", strconv.Itoa(os.Getpid()))
	err := syscall.Exec(os.Args[1], os.Args[2:], os.Environ())
	fmt.Fprintf(os.Stderr, "[rootlesskit:activation_helper] error: exec %s: %v\n", os.Args[1], err)
	os.Exit(1)
	return true
}
