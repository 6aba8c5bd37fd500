// Package spawn starts the namespace init: this executable again
// (/proc/self/exe), cloned into new namespaces, killed if the launcher dies.
package spawn

import (
	"errors"
	"os"
	"os/exec"
	"syscall"

	"github.com/unroot/unroot/internal/operr"
)

// Options for Start.
type Options struct {
	// Args is the init's argv; nil means this process's.
	Args       []string
	Env        []string
	ExtraFiles []*os.File // become fds 3..
	// Stdin, Stdout, Stderr; nil means this process's.
	Stdin, Stdout, Stderr *os.File
	Cloneflags            uintptr
	// AmbientCaps are raised in the clone before its exec, so the new
	// process keeps them although it execs as a still-unmapped uid.
	AmbientCaps []uintptr
}

// Start re-executes /proc/self/exe (with Args, or else the same argv) in
// new namespaces.
// It must be called from a goroutine that is not locked to its thread:
// Pdeathsig fires when the creating thread exits, and Go only ends threads
// whose goroutine exits while locked. The runtime may later lend that
// thread to any goroutine, so no goroutine of the launcher may end locked
// either (the relay's loops unlock theirs before they end).
func Start(o Options) (*exec.Cmd, error) {
	cmd, err := start(o, syscall.CLONE_VFORK|syscall.CLONE_VM)
	if errors.Is(err, syscall.EINVAL) {
		// A kernel that refuses a shared address space with these
		// namespaces gets the plain fork.
		cmd, err = start(o, 0)
	}
	if err != nil {
		return nil, operr.Errorf(operr.UserNS, "/proc/self/exe", "create namespaces (clone /proc/self/exe): %w", err)
	}
	return cmd, nil
}

// start clones with extra flags. Go forks, rather than vforks, whenever a
// user namespace is asked for, because it may have to write the id maps
// while the child waits; Options has no id maps (newuidmap writes them
// after the exec), so vfork is safe here, and it spares copying this
// process's page tables and the copy-on-write faults that follow, which
// is most of the clone's cost.
func start(o Options, extra uintptr) (*exec.Cmd, error) {
	cmd := &exec.Cmd{
		Path:       "/proc/self/exe",
		Args:       orArgs(o.Args),
		Env:        o.Env,
		ExtraFiles: o.ExtraFiles,
		Stdin:      orStd(o.Stdin, os.Stdin),
		Stdout:     orStd(o.Stdout, os.Stdout),
		Stderr:     orStd(o.Stderr, os.Stderr),
		SysProcAttr: &syscall.SysProcAttr{
			Cloneflags:  o.Cloneflags | extra,
			Pdeathsig:   syscall.SIGKILL,
			AmbientCaps: o.AmbientCaps,
		},
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return cmd, nil
}

func orStd(f, def *os.File) *os.File {
	if f == nil {
		return def
	}
	return f
}

func orArgs(a []string) []string {
	if a == nil {
		return os.Args
	}
	return a
}
