//go:build unroot_omit_netstack

package main

import (
	"fmt"

	"github.com/unroot/unroot/network"
)

// A build without the embedded network still knows its names, so that
// --net=netstack, and --net=auto on a machine without pasta or slirp4netns,
// say what is missing instead of "unknown network driver".
func init() {
	for _, name := range []string{"netstack", "gvisor", "gvisor-tap-vsock"} {
		netDrivers[name] = func(network.Config, *opts) (network.Driver, error) {
			return nil, fmt.Errorf("network driver %s is not in this build of unroot (built with -tags unroot_omit_netstack): install pasta or slirp4netns, or use a build without that tag", name)
		}
		delete(notSupported, name)
	}
}
