package helper

import (
	"context"
	"fmt"
	"log/slog"

	"golang.org/x/sys/unix"

	"github.com/unroot/unroot/network"
)

// PrecreateTap makes the tap device name in the child's netns persistent
// before the helper attaches to it by name (slirp4netns and pasta both do).
//
// Why: when the last fd of a non-persistent tap closes, the kernel
// unregisters the device synchronously, and that takes 15-30 ms (RCU grace
// periods) inside the helper's exit, so inside Close. A persistent tap is
// instead removed with the namespace, by the kernel's asynchronous netns
// cleanup, and stopping the helper takes 2-3 ms.
//
// It is an optimisation: without Child.OpenTap, or if anything fails, the
// helper creates its own tap as before, and the reason is logged.
func PrecreateTap(ctx context.Context, c network.Child, name string, log *slog.Logger) {
	if c.OpenTap == nil {
		return
	}
	f, err := c.OpenTap(ctx, name)
	if err != nil {
		log.Debug("tap not pre-created; the helper creates it", "err", err)
		return
	}
	defer f.Close() // the tap must be free for the helper to attach
	// The parent owns the child's user namespace, so it holds CAP_NET_ADMIN
	// over the tap's netns and may set the flag itself.
	if err := unix.IoctlSetInt(int(f.Fd()), unix.TUNSETPERSIST, 1); err != nil {
		log.Debug("tap not made persistent; stopping the helper will be slower", "err", fmt.Errorf("TUNSETPERSIST %s: %w", name, err))
	}
}
