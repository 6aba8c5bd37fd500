// Package builtin is unroot's own port driver. Listeners live in the host
// network namespace; each accepted TCP connection (or UDP client address) is
// relayed to the child through a socket that was created inside the child's
// network namespace ahead of need (port.SocketSource), so no per-connection
// round trip to another process is needed. The parent owns the child's user
// namespace, so it may set IP_TRANSPARENT on those sockets and bind them to
// the client's address: servers inside see the real client address for
// non-loopback clients, for TCP and UDP.
package builtin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/unroot/unroot/api"
	"github.com/unroot/unroot/internal/relay"
	"github.com/unroot/unroot/internal/sys"
	"github.com/unroot/unroot/port"
)

// Protos are the protos the builtin driver forwards.
var Protos = []string{"tcp", "tcp4", "tcp6", "udp", "udp4", "udp6"}

// Options configure the driver. The zero value is not the default: use
// DefaultOptions.
type Options struct {
	// SourceIPTransparent keeps the client address of non-loopback TCP
	// clients (--source-ip-transparent, on by default as in RootlessKit v3).
	SourceIPTransparent bool
	// SourceIPTransparentUDP keeps it for UDP too, for ports whose child IP
	// is loopback. Off by default: the server's reply only finds its way
	// back if it is sent from the address the flow was sent to, which holds
	// for servers bound to that address or replying with IP_PKTINFO
	// (dnsmasq, miekg/dns, quic-go) but not for servers on a wildcard
	// address that let the kernel pick the source (iperf3, most game
	// servers): their replies would leave through the network device and be
	// lost. See docs/ports.md.
	SourceIPTransparentUDP bool
	// PoolSize is how many ready sockets per family and type are kept
	// (0 = 8).
	PoolSize int
	// Firewall makes the connmark rules that keep the client address for
	// non-loopback child IPs: "" or "iptables", "nft", or "auto" (iptables,
	// else nft). RootlessKit 3.3's --source-ip-transparent-backend.
	Firewall string
}

// DefaultOptions are RootlessKit v3's defaults.
var DefaultOptions = Options{SourceIPTransparent: true}

// New is a port.Factory with DefaultOptions.
func New(ctx context.Context, env port.Env) (port.Driver, error) {
	return NewFactory(DefaultOptions)(ctx, env)
}

// NewFactory returns a port.Factory with the given options.
func NewFactory(o Options) port.Factory {
	return func(ctx context.Context, env port.Env) (port.Driver, error) {
		if env.Sockets == nil {
			return nil, errors.New("start builtin port driver: port driver requires non-host network: use --net=slirp4netns, pasta or none, or --port-driver=none")
		}
		if o.PoolSize <= 0 {
			o.PoolSize = 8
		}
		log := env.Logger
		if log == nil {
			log = slog.New(slog.DiscardHandler)
		}
		if fc, ok := env.Sockets.(port.FirewallChooser); ok && o.Firewall != "" {
			fc.SetFirewall(o.Firewall)
		}
		dctx, cancel := context.WithCancel(context.Background())
		return &Driver{
			opts:   o,
			src:    env.Sockets,
			log:    log.With("component", "port/builtin"),
			ctx:    dctx,
			cancel: cancel,
			ports:  map[int]*forward{},
			nextID: 1,
			pools:  map[poolKey]*pool{},

			prep: [2]prep{{done: make(chan struct{})}, {done: make(chan struct{})}},
		}, nil
	}
}

// Driver is the builtin port driver. It is safe for concurrent use.
type Driver struct {
	opts   Options
	src    port.SocketSource
	log    *slog.Logger
	ctx    context.Context // alive until Close
	cancel context.CancelFunc

	mu     sync.Mutex
	ports  map[int]*forward
	nextID int
	pools  map[poolKey]*pool
	closed bool

	// The child is prepared for transparent sockets once per kind, in the
	// background, when the first client whose address can be kept comes:
	// prep[0] for targets on the child's loopback, prep[1] for the others.
	prep [2]prep
	bg   sync.WaitGroup // the preparations and connections waiting for them

	// engine relays TCP connections; started with the first TCP port.
	engine *relay.Engine
	// localCC is the congestion control for connections from this host's
	// loopback ("": the host's default will do); set with engine.
	localCC string

	udpFlows     atomic.Int64 // open UDP flows, over every port
	udpTruncated atomic.Int64 // datagrams dropped for want of buffer
	udpCapped    atomic.Bool  // a UDP listener got less buffer than asked: said so
}

// relayThreads is how many epoll loops relay TCP: one per four CPUs, at
// most four. On small machines the client and the server need the other
// CPUs more than the relay needs a second thread.
func relayThreads() int { return min(max(runtime.GOMAXPROCS(0)/4, 1), 4) }

var _ port.Driver = (*Driver)(nil)

// forward is one published port: its listener and its goroutines.
type forward struct {
	status port.Status
	closer io.Closer // nil for TCP, whose listener serveTCP closes
	cancel context.CancelFunc
	done   chan struct{}
	aside  bool // StepAside closed the listener; stop has run
}

// Info reports the driver as RootlessKit's builtin driver does.
func (d *Driver) Info() api.PortDriverInfo {
	info := api.PortDriverInfo{Driver: "builtin", Protos: slices.Clone(Protos)}
	if d.opts.SourceIPTransparent {
		// As RootlessKit 3.3 reports it: unroot's connmark rules are
		// iptables ones.
		fw := "iptables"
		if d.opts.Firewall == "nft" {
			fw = "nft"
		}
		info.Extra = map[string]string{"sourceIPTransparentBackend": fw}
	}
	return info
}

// Add validates s, listens on the parent side and starts forwarding.
func (d *Driver) Add(ctx context.Context, s port.Spec) (port.Status, error) {
	if err := port.Validate(s); err != nil {
		return port.Status{}, err
	}
	if port.Transport(s.Proto) == "sctp" {
		return port.Status{}, fmt.Errorf("add port %s: %w by the builtin port driver: use tcp or udp", s.Proto, port.ErrUnsupportedProto)
	}
	target := s.ChildTarget()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return port.Status{}, errors.New("add port: the port driver is closed")
	}
	if err := port.Conflict(d.listLocked(), s); err != nil {
		return port.Status{}, err
	}
	f := &forward{status: port.Status{ID: d.nextID, Spec: s}}
	if err := d.listenLocked(f, target); err != nil {
		return port.Status{}, err
	}
	d.ports[f.status.ID] = f
	d.nextID++
	d.log.Debug("port added", "id", f.status.ID, "spec", s)
	return f.status, nil
}

// listenLocked opens f's host listener and starts serving it.
func (d *Driver) listenLocked(f *forward, target netip.AddrPort) error {
	s := f.status.Spec
	fctx, cancel := context.WithCancel(d.ctx)
	f.cancel, f.done, f.closer = cancel, make(chan struct{}), nil
	switch port.Transport(s.Proto) {
	case "tcp":
		if d.engine == nil {
			e, err := relay.NewEngine(relayThreads(), d.log)
			if err != nil {
				cancel()
				return fmt.Errorf("add port: %w", err)
			}
			d.engine = e
			d.localCC = sys.LocalCongestionControl()
		}
		ln, err := listenTCP(s)
		if err != nil {
			cancel()
			return err
		}
		// The pool comes after the listener, so a port that cannot listen
		// leaves no refill behind.
		p := d.poolLocked(target, "tcp")
		g := d.engine.NewGroup()
		go func() {
			defer close(f.done)
			d.serveTCP(fctx, ln, p, target, g)
			// The listener is closed: end the port's connections.
			g.Close()
		}()
	case "udp":
		pc, err := listenUDP(s)
		if err != nil {
			cancel()
			return err
		}
		f.closer = pc
		d.checkUDPBuffer(pc)
		// Set here rather than in serveUDP, which may start after a quick
		// Remove or Close has closed pc.
		v6sock, err := enablePktinfo(pc)
		if err != nil {
			d.log.Warn("replies may come from another local address: IP_PKTINFO failed", "addr", pc.LocalAddr(), "err", err)
		}
		p := d.poolLocked(target, "udp")
		go func() {
			defer close(f.done)
			d.serveUDP(fctx, pc, v6sock, p, target)
		}()
	}
	return nil
}

// List returns the published ports ordered by ID.
func (d *Driver) List(ctx context.Context) ([]port.Status, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.listLocked(), nil
}

func (d *Driver) listLocked() []port.Status {
	var out []port.Status
	for _, f := range d.ports {
		out = append(out, f.status)
	}
	slices.SortFunc(out, func(a, b port.Status) int { return a.ID - b.ID })
	return out
}

// Remove stops forwarding port id and closes its connections.
func (d *Driver) Remove(ctx context.Context, id int) error {
	d.mu.Lock()
	f, ok := d.ports[id]
	delete(d.ports, id)
	d.mu.Unlock()
	if !ok {
		return fmt.Errorf("unknown id: %d", id)
	}
	f.stop()
	d.log.Debug("port removed", "id", id)
	return nil
}

func (f *forward) stop() {
	if f.done == nil {
		return
	}
	f.cancel()
	if f.closer != nil {
		f.closer.Close()
	}
	<-f.done
}

// Close stops every forward, waits for their goroutines and closes the
// pooled sockets. A second call returns nil.
func (d *Driver) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	fs := d.ports
	d.ports = map[int]*forward{}
	pools := d.pools
	engine := d.engine
	d.mu.Unlock()
	for _, f := range fs {
		f.stop()
	}
	d.cancel()
	d.bg.Wait()
	for _, p := range pools {
		p.close()
	}
	if engine != nil {
		engine.Close()
	}
	return nil
}

// prep is one preparation of the child for IP_TRANSPARENT binds; ok is
// written before done closes.
type prep struct {
	once sync.Once
	done chan struct{}
	ok   bool
}

// prepFor is the preparation connections to target need. A server on the
// child's loopback answers from loopback, which policy routing alone sends
// back to the transparent socket; any other needs the connmark rules too,
// which take iptables.
func (d *Driver) prepFor(target netip.AddrPort) (*prep, bool) {
	if target.Addr().IsLoopback() {
		return &d.prep[0], false
	}
	return &d.prep[1], true
}

// prepareTransparent starts preparing the child for IP_TRANSPARENT binds to
// target, once per kind, in the background: the child may run iptables,
// which no accept loop should wait for. It waits for the first client that
// needs it, so launchers whose clients are all on this host prepare
// nothing, and those whose servers are on the child's loopback never run
// iptables.
func (d *Driver) prepareTransparent(target netip.AddrPort) {
	if !d.opts.SourceIPTransparent {
		return
	}
	p, connmark := d.prepFor(target)
	p.once.Do(func() {
		d.bg.Add(1)
		go func() {
			defer d.bg.Done()
			defer close(p.done)
			t0 := time.Now()
			if err := d.src.EnableTransparent(d.ctx, connmark); err != nil {
				if d.ctx.Err() == nil {
					hint := ""
					if connmark {
						hint = " (servers on the child's loopback, the default child IP, need no iptables)"
					}
					d.log.Warn("client addresses will not be kept: preparing the child for transparent sockets failed"+hint, "target", target, "err", err)
				}
				return
			}
			p.ok = true
			d.log.Debug("child prepared for transparent sockets", "connmark", connmark, "took", time.Since(t0))
		}()
	})
}

// transparentSettled reports whether no connection to target need wait for
// the child's preparation for IP_TRANSPARENT binds: it has ended, or client
// addresses are not kept at all.
func (d *Driver) transparentSettled(target netip.AddrPort) bool {
	if !d.opts.SourceIPTransparent {
		return true
	}
	p, _ := d.prepFor(target)
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// transparent reports whether the child is prepared for IP_TRANSPARENT
// binds to target, waiting for the preparation if it is still under way.
func (d *Driver) transparent(ctx context.Context, target netip.AddrPort) bool {
	if !d.opts.SourceIPTransparent {
		return false
	}
	d.prepareTransparent(target)
	p, _ := d.prepFor(target)
	select {
	case <-p.done:
		return p.ok
	case <-ctx.Done():
		return false
	}
}
