package childinit

import (
	"os"

	"github.com/unroot/unroot/internal/bypass"
	"github.com/unroot/unroot/internal/handshake"
	"github.com/unroot/unroot/internal/seccomp"
)

// BypassMode says whether the command starts under the socket filter whose
// notifications the launcher serves (unroot run --bypass).
type BypassMode int

const (
	BypassOff BypassMode = iota
	// BypassOn fails the start when the filter cannot be installed.
	BypassOn
	// BypassAuto starts the command without the filter then, and says why.
	BypassAuto
)

// bypassResult is the filter's listener, or why there is none.
type bypassResult struct {
	listener *os.File
	err      error // under BypassAuto: the filter could not be installed
}

func (b bypassResult) close() {
	if b.listener != nil {
		b.listener.Close()
	}
}

// installBypass puts the filter on the calling thread, which must be locked
// for good and fork the command: the command and everything it starts
// inherit the filter, the init's other threads do not.
func installBypass(mode BypassMode) (bypassResult, error) {
	if mode == BypassOff {
		return bypassResult{}, nil
	}
	// Probed first on a throwaway thread: a kernel that installs the
	// filter but cannot swap sockets (before 5.9) would leave the command
	// under a filter nobody can serve.
	err := seccomp.Probe()
	if err == nil {
		var arch seccomp.Arch
		if arch, err = seccomp.NativeArch(); err == nil {
			var fd int
			if fd, err = seccomp.Install(seccomp.Program(arch, bypass.Rules())); err == nil {
				return bypassResult{listener: os.NewFile(uintptr(fd), "seccomp-listener")}, nil
			}
		}
	}
	if mode == BypassAuto {
		return bypassResult{err: err}, nil
	}
	return bypassResult{}, err
}

// sendOffThread sends m over ctl from another thread than the caller's.
// Every ctl.Send that may come after installBypass goes through it: the
// caller may be the thread that installed the command's filter (locked for
// good), which traps sendmsg. Sent from there, the Started message would
// wait for a supervisor that starts only once this very message hands it
// the listener; and an error (the command could not be exec'd, after the
// listener was closed) would fail with ENOSYS, so the launcher would see
// the init go away instead of the error. A goroutine never runs on a
// thread another one has locked, and Go makes new threads of a locked one
// from its template thread, so the filter is not on the one this sends
// from.
func sendOffThread(ctl *handshake.Conn, m handshake.Msg, files ...*os.File) error {
	sent := make(chan error, 1)
	go func() { sent <- ctl.Send(m, files...) }()
	return <-sent
}

// sendStarted tells the launcher the command runs and passes it the
// filter's listener (or, under BypassAuto, why there is none), from
// another thread than the filtered one (sendOffThread).
func sendStarted(ctl *handshake.Conn, pid int, b bypassResult) error {
	m := handshake.Msg{Kind: handshake.Started, PID: pid}
	if b.listener == nil {
		if b.err != nil {
			m.Err = b.err.Error()
		}
		return sendOffThread(ctl, m)
	}
	defer b.listener.Close()
	return sendOffThread(ctl, m, b.listener)
}
