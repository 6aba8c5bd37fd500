package builtin

import (
	"context"
	"fmt"

	"github.com/unroot/unroot/port"
)

// StepAside closes the host listener of port id and ends its connections,
// keeping the port published: a program inside whose socket became a host
// socket on that address (unroot run --bypass) serves it now. StepBack
// listens again. Both are idempotent.
func (d *Driver) StepAside(ctx context.Context, id int) error {
	d.mu.Lock()
	f, ok := d.ports[id]
	if !ok {
		d.mu.Unlock()
		return fmt.Errorf("step aside port %d: unknown id", id)
	}
	if f.aside {
		d.mu.Unlock()
		return nil
	}
	f.aside = true
	d.mu.Unlock()
	f.stop()
	d.log.Debug("port stepped aside", "id", id)
	return nil
}

// StepBack listens on port id's host address again after StepAside.
func (d *Driver) StepBack(ctx context.Context, id int) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	f, ok := d.ports[id]
	if !ok || d.closed {
		return nil // removed meanwhile: nothing to bring back
	}
	if !f.aside {
		return nil
	}
	if err := d.listenLocked(f, f.status.Spec.ChildTarget()); err != nil {
		return fmt.Errorf("step back port %d: %w", id, err)
	}
	f.aside = false
	d.log.Debug("port stepped back", "id", id)
	return nil
}

// Stepper is implemented by port drivers whose host listeners can step
// aside for a bypassed socket.
var _ interface {
	StepAside(context.Context, int) error
	StepBack(context.Context, int) error
} = (*Driver)(nil)

var _ port.Driver = (*Driver)(nil)
