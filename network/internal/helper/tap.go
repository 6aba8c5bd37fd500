package helper

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/unroot/unroot/internal/sys"
	"github.com/unroot/unroot/network"
)

// StartOnTap starts a helper that attaches to the tap device name, a
// persistent device in the child's netns: pre-created by the child when the
// launcher asked it to (network.TapPrecreator), else created here first.
//
// Why: when the last fd of a non-persistent tap closes, the kernel
// unregisters the device synchronously, waiting out RCU grace periods
// inside the helper's exit, so inside Close. A persistent tap is instead
// removed with the namespace, by the kernel's asynchronous netns cleanup,
// and stopping the helper waits for nothing of the kind.
//
// It is an optimisation: without Child.OpenTap, or if pre-creating fails,
// the helper creates its own tap. If the helper fails on the pre-created tap
// (a future version might want other tap flags), the tap is removed and the
// helper is started once more on its own.
//
// persistent reports whether the helper runs on the persistent tap, which
// outlives it: then a restarted helper finds the child's addresses and
// routes still in place.
func StartOnTap(ctx context.Context, c network.Child, name string, o Options) (p *Process, persistent bool, err error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	pre := c.PreTap != nil && c.PreTap(ctx, name)
	if !pre {
		if pre = setPersist(ctx, c, name, true, log); pre {
			waitTunClosed(c.PID, log)
		}
	}
	p, err = Start(ctx, o)
	if err == nil || !pre {
		return p, pre && err == nil, err
	}
	log.Debug(o.Name+" failed on the pre-created tap; retrying without it", "err", err)
	if !setPersist(ctx, c, name, false, log) {
		return nil, false, err
	}
	p, err = Start(ctx, o)
	return p, false, err
}

// setPersist opens the tap through the child and sets or clears its
// persistent flag; clearing it removes the device once the fd is closed.
// It reports whether it succeeded.
func setPersist(ctx context.Context, c network.Child, name string, on bool, log *slog.Logger) bool {
	if c.OpenTap == nil {
		return false
	}
	f, err := c.OpenTap(ctx, name)
	if err != nil {
		log.Debug("tap not pre-created; the helper creates it", "err", err)
		return false
	}
	defer f.Close() // the tap must be free for the helper to attach
	// The parent owns the child's user namespace, so it holds CAP_NET_ADMIN
	// over the tap's netns and may set the flag itself.
	if err := sys.SetTapPersist(f, on); err != nil {
		log.Debug("tap persistence not changed", "err", fmt.Errorf("TUNSETPERSIST %s %v: %w", name, on, err))
		return false
	}
	return true
}

// waitTunClosed waits until the child has closed its copy of the tap fd it
// sent: it closes it only after sending, and a tap that is not multi-queue
// takes one fd at a time, so a helper attaching earlier gets EBUSY. The
// child's fd table is readable to the parent (same user); if it is not, or
// the wait runs long, the helper's start (and StartOnTap's retry) decides.
func waitTunClosed(pid int, log *slog.Logger) {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	deadline := time.Now().Add(100 * time.Millisecond)
	for {
		ents, err := os.ReadDir(dir)
		if err != nil {
			return
		}
		open := false
		for _, e := range ents {
			if l, err := os.Readlink(dir + "/" + e.Name()); err == nil && l == "/dev/net/tun" {
				open = true
				break
			}
		}
		if !open {
			return
		}
		if time.Now().After(deadline) {
			log.Debug("the child still holds the tap after 100ms; starting the helper anyway")
			return
		}
		time.Sleep(200 * time.Microsecond)
	}
}
