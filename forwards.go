package unroot

import (
	"context"

	"github.com/unroot/unroot/forward"
)

// validateForwards checks Forward without touching the system.
func (l *Launcher) validateForwards() error {
	if len(l.Forward) == 0 {
		return nil
	}
	if !l.privateNet() {
		return configErrorf("Forward", "{Forward} needs a network namespace: use {Network=private} (with the host's network its services are reachable as they are)")
	}
	for _, sp := range l.Forward {
		if err := forward.Validate(sp); err != nil {
			return configErrorf("Forward", "{Forward} %s: %v", sp, err)
		}
	}
	return nil
}

// startForwards starts the reverse forwards (Forward) once the network is
// up; the API can add more later. Without a network namespace there is
// nothing to forward into.
func (l *Launcher) startForwards(ctx context.Context) error {
	if !l.privateNet() {
		return nil
	}
	l.fwd = forward.New(l.sockets, l.log)
	for _, sp := range l.Forward {
		if _, err := l.fwd.Add(ctx, sp); err != nil {
			return err
		}
	}
	return nil
}
