// Package slirp4netns is the port driver that asks a running slirp4netns
// to forward host ports (its add_hostfwd API), for --net=slirp4netns
// --port-driver=slirp4netns. slirp4netns rebuilds each connection from its
// own stack, so servers see the client's address, but it forwards IPv4
// only and cannot reach the child's loopback, and it is slower than the
// builtin driver.
package slirp4netns

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sync"

	"github.com/unroot/unroot/api"
	"github.com/unroot/unroot/port"
)

// APISocketer is the network driver this port driver works through: the
// slirp4netns network driver started with its API socket
// (network/slirp4netns.Options.APISocket).
type APISocketer interface {
	// APISocket is the path of slirp4netns's --api-socket, "" without one.
	APISocket() string
}

// Restarter is a network driver whose helper may be restarted; the port
// driver publishes its ports in each new slirp4netns
// (network/slirp4netns.Driver.OnRestart).
type Restarter interface {
	OnRestart(func(context.Context) error)
}

// Protos are what slirp4netns forwards.
var Protos = []string{"tcp", "tcp4", "udp", "udp4"}

// New is a port.Factory.
func New(ctx context.Context, env port.Env) (port.Driver, error) {
	var sock string
	if a, ok := env.Network.(APISocketer); ok {
		sock = a.APISocket()
	}
	if sock == "" {
		return nil, errors.New("start slirp4netns port driver: no slirp4netns API socket: use --net=slirp4netns (it starts slirp4netns with --api-socket)")
	}
	log := env.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	childIP := env.ChildIP
	if !childIP.IsValid() {
		childIP = netip.AddrFrom4([4]byte{10, 0, 2, 100})
	}
	d := &Driver{sock: sock, childIP: childIP, log: log.With("component", "port/slirp4netns"), ports: map[int]entry{}}
	if r, ok := env.Network.(Restarter); ok {
		r.OnRestart(d.republish)
	}
	return d, nil
}

// entry is a published port: its spec and its id in the slirp4netns that
// runs now. IDs handed out are slirp4netns's own until it is restarted;
// its new ids restart from 1, so from then on clients keep the ids they
// got and sid maps them to the new process's.
type entry struct {
	spec port.Spec
	sid  int
}

// Driver forwards through slirp4netns. Port IDs are slirp4netns's.
type Driver struct {
	sock    string
	childIP netip.Addr
	log     *slog.Logger

	mu    sync.Mutex
	ports map[int]entry // by the ID clients know
	maxID int           // the largest ID handed out
}

var _ port.Driver = (*Driver)(nil)

// Info reports the driver as RootlessKit does.
func (d *Driver) Info() api.PortDriverInfo {
	return api.PortDriverInfo{Driver: "slirp4netns", Protos: slices.Clone(Protos), DisallowLoopbackChildIP: true}
}

type request struct {
	Execute   string `json:"execute"`
	Arguments any    `json:"arguments,omitempty"`
}

type hostfwd struct {
	Proto     string `json:"proto"`
	HostAddr  string `json:"host_addr"`
	HostPort  int    `json:"host_port"`
	GuestAddr string `json:"guest_addr"`
	GuestPort int    `json:"guest_port"`
}

type reply struct {
	Return json.RawMessage `json:"return"`
	Error  *struct {
		Desc string `json:"desc"`
	} `json:"error"`
}

// call sends one request; slirp4netns answers one per connection.
func (d *Driver) call(ctx context.Context, req request) (json.RawMessage, error) {
	var dl net.Dialer
	c, err := dl.DialContext(ctx, "unix", d.sock)
	if err != nil {
		return nil, fmt.Errorf("connect to slirp4netns at %s: %w (did slirp4netns exit?)", d.sock, err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	b, _ := json.Marshal(req)
	if _, err := c.Write(b); err != nil {
		return nil, fmt.Errorf("slirp4netns %s: %w", req.Execute, err)
	}
	c.(*net.UnixConn).CloseWrite()
	data, err := io.ReadAll(io.LimitReader(c, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("slirp4netns %s: %w", req.Execute, err)
	}
	var r reply
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("slirp4netns %s: bad reply %q: %w", req.Execute, data, err)
	}
	if r.Error != nil {
		return nil, fmt.Errorf("slirp4netns %s: %s", req.Execute, r.Error.Desc)
	}
	return r.Return, nil
}

// Add asks slirp4netns to forward s.
func (d *Driver) Add(ctx context.Context, s port.Spec) (port.Status, error) {
	if err := port.Validate(s); err != nil {
		return port.Status{}, err
	}
	if !slices.Contains(Protos, s.Proto) {
		return port.Status{}, fmt.Errorf("unsupported protocol %q: %w by the slirp4netns port driver (IPv4 tcp and udp only); use --port-driver=builtin for %s", s.Proto, port.ErrUnsupportedProto, s.Proto)
	}
	hostAddr := "0.0.0.0"
	if s.ParentIP.IsValid() {
		ip := s.ParentIP.Unmap()
		if !ip.Is4() {
			return port.Status{}, fmt.Errorf("parentIP %s: the slirp4netns port driver listens on IPv4 only", s.ParentIP)
		}
		hostAddr = ip.String()
	}
	guest := d.childIP
	if s.ChildIP.IsValid() {
		guest = s.ChildIP.Unmap()
		if guest.IsLoopback() {
			return port.Status{}, fmt.Errorf("childIP %s: the slirp4netns port driver cannot reach the child's loopback; use the child's address %s or leave childIP empty", s.ChildIP, d.childIP)
		}
		if !guest.Is4() {
			return port.Status{}, fmt.Errorf("childIP %s: the slirp4netns port driver forwards IPv4 only", s.ChildIP)
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var existing []port.Status
	for id, e := range d.ports {
		existing = append(existing, port.Status{ID: id, Spec: e.spec})
	}
	if err := port.Conflict(existing, s); err != nil {
		return port.Status{}, err
	}
	sid, err := d.addHostfwd(ctx, hostfwd{
		Proto: port.Transport(s.Proto), HostAddr: hostAddr, HostPort: s.ParentPort, GuestAddr: guest.String(), GuestPort: s.ChildPort,
	})
	if err != nil {
		return port.Status{}, err
	}
	// slirp4netns's ids grow, so until a restart this is its id.
	id := max(sid, d.maxID+1)
	d.maxID = id
	d.ports[id] = entry{spec: s, sid: sid}
	return port.Status{ID: id, Spec: s}, nil
}

func (d *Driver) addHostfwd(ctx context.Context, f hostfwd) (int, error) {
	ret, err := d.call(ctx, request{Execute: "add_hostfwd", Arguments: f})
	if err != nil {
		return 0, err
	}
	var r struct {
		ID *int `json:"id"`
	}
	if err := json.Unmarshal(ret, &r); err != nil || r.ID == nil {
		return 0, fmt.Errorf("slirp4netns add_hostfwd: reply without an id: %s", ret)
	}
	return *r.ID, nil
}

// forward is s as slirp4netns's add_hostfwd takes it; Add has checked it.
func (d *Driver) forward(s port.Spec) hostfwd {
	f := hostfwd{Proto: port.Transport(s.Proto), HostAddr: "0.0.0.0", HostPort: s.ParentPort, GuestAddr: d.childIP.String(), GuestPort: s.ChildPort}
	if s.ParentIP.IsValid() {
		f.HostAddr = s.ParentIP.Unmap().String()
	}
	if s.ChildIP.IsValid() {
		f.GuestAddr = s.ChildIP.Unmap().String()
	}
	return f
}

// republish publishes every port again in a restarted slirp4netns, in the
// order they were added; the first that fails fails the restart (the
// network driver then tries another, or gives up).
func (d *Driver) republish(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	ids := slices.Sorted(maps.Keys(d.ports))
	for _, id := range ids {
		e := d.ports[id]
		sid, err := d.addHostfwd(ctx, d.forward(e.spec))
		if err != nil {
			return fmt.Errorf("publish port %d (%s) again in the restarted slirp4netns: %w", id, e.spec, err)
		}
		e.sid = sid
		d.ports[id] = e
	}
	if len(ids) > 0 {
		d.log.Warn("ports published again in the restarted slirp4netns", "ports", len(ids))
	}
	return nil
}

// List returns the forwarded ports ordered by ID.
func (d *Driver) List(ctx context.Context) ([]port.Status, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []port.Status
	for id, e := range d.ports {
		out = append(out, port.Status{ID: id, Spec: e.spec})
	}
	slices.SortFunc(out, func(a, b port.Status) int { return a.ID - b.ID })
	return out, nil
}

// Remove stops forwarding port id.
func (d *Driver) Remove(ctx context.Context, id int) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	e, ok := d.ports[id]
	if !ok {
		return fmt.Errorf("unknown id: %d", id)
	}
	if _, err := d.call(ctx, request{Execute: "remove_hostfwd", Arguments: map[string]int{"id": e.sid}}); err != nil {
		return err
	}
	delete(d.ports, id)
	return nil
}

// Close forgets the ports; slirp4netns's forwards end with slirp4netns,
// which the network driver stops.
func (d *Driver) Close() error {
	d.mu.Lock()
	d.ports = map[int]entry{}
	d.mu.Unlock()
	return nil
}
