package childinit

// The init's lifetime: it dies with the parent (death signal or pidfd
// watch), reaps every child that ends up with it and, without a PID
// namespace, kills the command's tree on the way out.

import (
	"os"
	"syscall"

	"github.com/unroot/unroot/internal/proctree"
	"github.com/unroot/unroot/internal/sockpool"
	"github.com/unroot/unroot/internal/sys"
)

// reap waits for every child that ends up with us (as PID 1) and returns
// the command's status.
func reap(pid int, chld <-chan os.Signal) syscall.WaitStatus {
	for {
		sockpool.ExecMu.Lock() // leave helpers run by os/exec to their Wait
		for {
			var ws syscall.WaitStatus
			got, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if err == syscall.EINTR {
				continue
			}
			if err != nil || got <= 0 {
				break
			}
			if got == pid {
				sockpool.ExecMu.Unlock()
				return ws
			}
		}
		sockpool.ExecMu.Unlock()
		<-chld
	}
}

// killTree kills every descendant. Orphans reparent to us (subreaper) as
// their parents die, so it repeats until none is left.
func killTree() {
	for range 100 {
		// The common case, nothing left, costs one syscall instead of a
		// walk through /proc on the exit path.
		if !sys.HasChildren() {
			return
		}
		pids := proctree.Descendants(os.Getpid())
		if len(pids) == 0 {
			return
		}
		for _, p := range pids {
			syscall.Kill(p, syscall.SIGKILL)
		}
		for {
			got, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if err != nil || got <= 0 {
				break
			}
		}
	}
}

// watchParent makes sure the init and the command die with the parent.
// The clone's death signal does not survive a re-exec; set it again, then
// make sure the parent did not die in between. As PID 1, SIGKILL takes the
// whole PID namespace with us. Without a PID namespace that would leave the
// command's descendants running, so we watch the parent with a pidfd
// instead, become the command's subreaper (orphans stay under us, where we
// can find them) and kill the whole tree when it dies.
func watchParent(cfg Config) error {
	if cfg.PIDNS {
		return sys.SetPdeathsig(sys.SIGKILL)
	}
	parentGone, err := sys.WatchExit(cfg.ParentPID)
	if err != nil {
		// No pidfd (Linux < 5.3): the command itself still dies with us.
		if err := sys.SetPdeathsig(sys.SIGKILL); err != nil {
			return err
		}
	} else {
		if err := sys.SetChildSubreaper(); err != nil {
			return err
		}
		// Without a re-exec the clone's SIGKILL death signal is still
		// set; it would kill us before we could kill the tree.
		if err := sys.SetPdeathsig(0); err != nil {
			return err
		}
		go func() {
			<-parentGone
			killTree()
			os.Exit(137)
		}()
	}
	if sys.Getppid() != cfg.ParentPID {
		return errParentGone
	}
	return nil
}
