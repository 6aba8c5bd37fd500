package helper

import (
	"context"
	"fmt"
	"log/slog"

	"golang.org/x/sys/unix"

	"github.com/unroot/unroot/network"
)

// StartOnTap starts a helper that attaches to the tap device name, which it
// first pre-creates in the child's netns as a persistent device.
//
// Why: when the last fd of a non-persistent tap closes, the kernel
// unregisters the device synchronously, and that takes 15-30 ms (RCU grace
// periods) inside the helper's exit, so inside Close. A persistent tap is
// instead removed with the namespace, by the kernel's asynchronous netns
// cleanup, and stopping the helper takes well under a millisecond.
//
// It is an optimisation: without Child.OpenTap, or if pre-creating fails,
// the helper creates its own tap. If the helper fails on the pre-created tap
// (a future version might want other tap flags), the tap is removed and the
// helper is started once more on its own.
func StartOnTap(ctx context.Context, c network.Child, name string, o Options) (*Process, error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	pre := setPersist(ctx, c, name, true, log)
	p, err := Start(ctx, o)
	if err == nil || !pre {
		return p, err
	}
	log.Debug(o.Name+" failed on the pre-created tap; retrying without it", "err", err)
	if !setPersist(ctx, c, name, false, log) {
		return nil, err
	}
	return Start(ctx, o)
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
	v := 0
	if on {
		v = 1
	}
	// The parent owns the child's user namespace, so it holds CAP_NET_ADMIN
	// over the tap's netns and may set the flag itself.
	if err := unix.IoctlSetInt(int(f.Fd()), unix.TUNSETPERSIST, v); err != nil {
		log.Debug("tap persistence not changed", "err", fmt.Errorf("TUNSETPERSIST %s %d: %w", name, v, err))
		return false
	}
	return true
}
