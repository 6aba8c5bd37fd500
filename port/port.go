// Package port defines what a port driver is: the published-port spec and
// status that the REST API speaks, and the Driver interface that forwarders
// (builtin, slirp4netns) implement on the parent side.
package port

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"

	"github.com/unroot/unroot/api"
	"github.com/unroot/unroot/network"
)

// Spec is one published port, with RootlessKit's JSON names and order. It
// is parsed once, where it enters (ParseSpec for flags, UnmarshalJSON for
// the API), and every later user takes the typed fields; String formats it
// back in RootlessKit's grammar.
type Spec struct {
	Proto string `json:"proto,omitempty"`
	// ParentIP is the host address to listen on; the zero Addr means all
	// addresses.
	ParentIP   netip.Addr `json:"parentIP,omitzero"`
	ParentPort int        `json:"parentPort,omitempty"`
	ChildPort  int        `json:"childPort,omitempty"`
	// ChildIP is the address inside the namespace to connect to; the zero
	// Addr means the driver's default (loopback of the proto's family for
	// builtin).
	ChildIP netip.Addr `json:"childIP,omitzero"`
}

// Status is a published port and its ID.
type Status struct {
	ID   int  `json:"id"`
	Spec Spec `json:"spec"`
}

// ErrNoDriver is returned by the API when no port driver is active.
var ErrNoDriver = errors.New("no PortDriver is available")

// ErrSourceClosed is wrapped by SocketSource errors that no retry can cure:
// the namespace that made the sockets is gone (the command has ended).
var ErrSourceClosed = errors.New("the namespace's socket source is closed")

// Driver is the parent half of a port driver. Implementations are safe for
// concurrent use. Close stops every forward and waits for its goroutines.
type Driver interface {
	Info() api.PortDriverInfo
	Add(ctx context.Context, s Spec) (Status, error)
	List(ctx context.Context) ([]Status, error)
	Remove(ctx context.Context, id int) error
	Close() error
}

// SocketSource hands out sockets created inside the child's network namespace
// (the detached one with --detach-netns). The parent can connect, bind and set
// options on them itself, so no per-connection round trip to the child is
// needed. It is implemented by the launcher; drivers only consume it.
type SocketSource interface {
	// Socket returns a new unconnected socket, created in the child's netns,
	// of the given family (AF_INET or AF_INET6, as syscall numbers them) and
	// type (SOCK_STREAM or SOCK_DGRAM). The descriptor is non-blocking and
	// close-on-exec, and the caller owns it; stream sockets have TCP_NODELAY
	// set. It is raw, not an *os.File, so a driver with its own epoll loop
	// does not pay to register it with the runtime poller.
	// Once the namespace is gone, the error wraps ErrSourceClosed.
	Socket(ctx context.Context, family, sotype int) (int, error)
	// EnableTransparent prepares the child's netns so that sockets bound with
	// IP_TRANSPARENT to a foreign (client) address get their replies
	// delivered locally. Policy routing is enough for replies sent from a
	// loopback address; connmark, when set, also marks the connections so
	// that replies from any other address come back (a server on the
	// child's own address, or in a namespace behind it), which takes
	// iptables. Idempotent.
	EnableTransparent(ctx context.Context, connmark bool) error
}

// FirewallChooser is a SocketSource whose connmark rules (see
// EnableTransparent) can be made with another firewall: "iptables" (the
// default), "nft", or "auto" (iptables, else nft). RootlessKit 3.3's
// --source-ip-transparent-backend.
type FirewallChooser interface {
	SetFirewall(name string)
}

// Env is what the launcher gives a port driver factory once the child's
// network is up.
type Env struct {
	Sockets  SocketSource // nil for --net=host
	ChildIP  netip.Addr   // the child's address on the network driver's device, if any
	StateDir string
	// Network is the active network driver, nil for --net=host. A port
	// driver that works through it asserts the interface it needs (the
	// slirp4netns port driver: APISocket() string).
	Network network.Driver
	Logger  *slog.Logger
}

// Factory makes a port driver for a running child.
type Factory func(ctx context.Context, env Env) (Driver, error)
