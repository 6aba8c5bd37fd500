// Package network defines the parent half of a network driver and the
// addressing it hands to the namespace. Drivers live in sub-packages
// (host, slirp4netns, pasta, netstack); this package has no implementation.
package network

import (
	"context"
	"log/slog"
	"net/netip"
	"os"

	"github.com/unroot/unroot/api"
)

// Config holds the options every driver understands. Zero values mean the
// driver's defaults (MTU 65520, CIDR 10.0.2.0/24, IfName tap0).
type Config struct {
	MTU                 int
	CIDR                netip.Prefix
	IfName              string
	DisableHostLoopback bool
	IPv6                bool
	// Binary overrides the helper binary (slirp4netns, pasta); "" means look it up in PATH.
	Binary string
	// Logger receives the driver's progress; nil discards it. Settings
	// that only one driver has are that driver's Options, passed to its New.
	Logger *slog.Logger
}

// Child is the running namespace init a driver attaches to.
type Child struct {
	PID int
	// NetNS is the path of the network namespace to attach to: /proc/PID/ns/net,
	// or /proc/PID/root/STATE/netns with --detach-netns.
	NetNS string
	// UserNS is /proc/PID/ns/user.
	UserNS   string
	Detached bool
	StateDir string
	// OpenTap asks the child to create (or open) the tap device name in its
	// netns and returns the device fd, passed over the control socket. Used by
	// in-process drivers such as netstack.
	OpenTap func(ctx context.Context, name string) (*os.File, error)
	// PreTap, when set, waits until the child has reported on the
	// persistent tap it was asked to pre-create (see TapPrecreator) and
	// says whether the tap name exists.
	PreTap func(ctx context.Context, name string) bool
}

// TapPrecreator is a driver whose helper attaches to a tap device by name.
// The launcher then has the child create that tap persistent before
// anything else, so the helper finds it ready and the device outlives the
// helper (stopping a helper that owns a non-persistent tap waits for the
// kernel's synchronous unregistering of the device).
type TapPrecreator interface {
	PreTap() PreTap
}

// PreTap is what a TapPrecreator asks of the launcher.
type PreTap struct {
	// Name is the tap device's name.
	Name string
	// BeforeIDMap lets the driver start before the child's uid and gid maps
	// are written (its helper needs nothing from the mapping), overlapping
	// newuidmap.
	BeforeIDMap bool
	// Setup, when the driver knows it before starting, lets the child
	// address the tap and route through it while the helper starts. Start
	// must then return an equal Setup; if it does not, the child applies
	// the one Start returned.
	Setup *Setup
}

// Setup tells the child how to configure its interface. When
// ConfiguredByDriver is true (pasta), the child only brings up lo and writes
// resolv.conf/hosts.
type Setup struct {
	IfName             string
	Addr               netip.Prefix // e.g. 10.0.2.100/24
	Gateway            netip.Addr
	DNS                []netip.Addr
	MTU                int
	Addr6              netip.Prefix // optional, with IPv6
	Gateway6           netip.Addr
	ConfiguredByDriver bool
}

// Supervised is a driver whose helper process is kept alive: restarted
// when it dies, and reported on. The launcher puts Health in /v1/info and
// acts on Failed (--on-network-failure).
type Supervised interface {
	// Health is the helper's state; valid once Start has returned.
	Health() api.NetworkHealth
	// Failed is closed once the helper is lost for good: it died and
	// cannot be, or is no longer, restarted. Nil before Start.
	Failed() <-chan struct{}
}

// Driver is the parent half of a network driver. Start is called once the
// child's namespaces exist and its ids are mapped; it returns when the device
// is usable. Close stops helper processes and waits for them: nothing may be
// left running after it returns.
type Driver interface {
	Name() string
	Start(ctx context.Context, c Child) (Setup, error)
	Info() *api.NetworkDriverInfo // nil for host
	Close() error
}
