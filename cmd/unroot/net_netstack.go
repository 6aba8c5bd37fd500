//go:build !unroot_omit_netstack

package main

import (
	"github.com/unroot/unroot/network"
	"github.com/unroot/unroot/network/netstack"
)

// The embedded user-mode network registers itself so that a build with the
// unroot_omit_netstack tag leaves gVisor out of the binary entirely. It
// answers to its own name and to the names RootlessKit users know an
// in-process gVisor network by.
func init() {
	mk := func(cfg network.Config, _ *opts) (network.Driver, error) { return netstack.New(cfg) }
	for _, name := range []string{netstack.Name, "gvisor", "gvisor-tap-vsock"} {
		netDrivers[name] = mk
		delete(notSupported, name)
	}
}
