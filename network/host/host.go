// Package host provides the two network drivers that need no helper
// process: host (the command shares the host's network namespace) and none
// (a private network namespace with only loopback).
package host

import (
	"context"

	"github.com/unroot/unroot/api"
	"github.com/unroot/unroot/network"
)

// Driver is the host or none driver.
type Driver struct {
	none bool
}

var _ network.Driver = (*Driver)(nil)

// New returns the host driver: no network namespace is created.
func New() *Driver { return &Driver{} }

// None returns the none driver: a private network namespace with lo up.
func None() *Driver { return &Driver{none: true} }

// Name is "host" or "none".
func (d *Driver) Name() string {
	if d.none {
		return "none"
	}
	return "host"
}

// SharesHostNetwork tells the launcher not to create a network namespace.
func (d *Driver) SharesHostNetwork() bool { return !d.none }

// Start has nothing to start: lo is brought up by the namespace init.
func (d *Driver) Start(ctx context.Context, c network.Child) (network.Setup, error) {
	return network.Setup{}, nil
}

// Info is nil for host (RootlessKit omits networkDriver) and
// {"driver":"none"} for none.
func (d *Driver) Info() *api.NetworkDriverInfo {
	if !d.none {
		return nil
	}
	return &api.NetworkDriverInfo{Driver: "none"}
}

// Close has nothing to stop.
func (d *Driver) Close() error { return nil }
