// Package netstack is a user-mode network driver that needs no outside
// binary: gVisor's TCP/IP stack runs inside the unroot process, reads and
// writes the namespace's tap device directly (the child opens the tap and
// passes its fd over), and re-originates every TCP connection and UDP flow
// from the namespace as an ordinary host socket.
//
// It exists so that a bare machine without slirp4netns or pasta still gets a
// working network, and so that the network costs no extra process: nothing
// can be left behind once Close returns. See docs/netstack.md for the
// addressing, the choice of gvisor.dev/gvisor over gvisor-tap-vsock and the
// measurements.
package netstack

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"syscall"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/link/fdbased"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"

	"github.com/unroot/unroot/api"
	"github.com/unroot/unroot/network"
)

// Name is the driver name used by the CLI and reported by the API.
const Name = "netstack"

const nicID tcpip.NICID = 1

// linkAddr is the stack's MAC on the tap: locally administered, bytes
// "unroot", so it is recognisable in a capture.
var linkAddr = tcpip.LinkAddress("\x02\x75\x6e\x72\x6f\x74")

// Driver is the netstack network driver. Create it with New; Start and Close
// are each called once.
type Driver struct {
	cfg  network.Config
	plan plan
	log  *slog.Logger

	// resolvConf is the file DNS upstreams come from; tests point it elsewhere.
	resolvConf string
	// upstreams, when set, replaces resolvConf (tests run resolvers on
	// unprivileged ports, which resolv.conf cannot express).
	upstreams []netip.AddrPort

	ctx    context.Context // alive until Close
	cancel context.CancelFunc

	mu          sync.Mutex
	closing     bool // no new goroutines or sockets from here on
	closeCalled bool
	closeOnce   sync.Once
	closeErr    error
	wg          sync.WaitGroup         // every goroutine this driver starts
	conns       map[io.Closer]struct{} // host and stack sockets of live flows
	stack       *stack.Stack
	link        stack.LinkEndpoint // the tap endpoint, stopped before the stack
	tapFD       int
	started     bool
}

var _ network.Driver = (*Driver)(nil)

// New checks cfg and returns a driver. Zero fields mean the defaults:
// CIDR 10.0.2.0/24 (child .100, gateway and DNS .1), MTU 65520, IfName tap0.
// With cfg.IPv6 the child also gets fd00:756e:726f:6f74::100/64 with gateway
// and DNS at ::1 of that prefix.
func New(cfg network.Config) (*Driver, error) {
	p, err := makePlan(cfg)
	if err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Driver{
		cfg:        cfg,
		plan:       p,
		log:        log.With("driver", Name),
		resolvConf: "/etc/resolv.conf",
		ctx:        ctx,
		cancel:     cancel,
		conns:      map[io.Closer]struct{}{},
		tapFD:      -1,
	}, nil
}

// Name implements network.Driver.
func (d *Driver) Name() string { return Name }

// Info implements network.Driver.
func (d *Driver) Info() *api.NetworkDriverInfo {
	info := &api.NetworkDriverInfo{Driver: Name}
	if d.plan.gateway.IsValid() {
		info.DNS = []string{d.plan.gateway.String()}
		info.ChildIP = d.plan.addr.Addr().String()
	}
	if d.plan.gateway6.IsValid() {
		info.DNS = append(info.DNS, d.plan.gateway6.String())
		info.IPv6 = true
		if info.ChildIP == "" {
			info.ChildIP = d.plan.addr6.Addr().String() // IPv6 only
		}
	}
	return info
}

// Setup is the addressing Start hands to the child, available before Start.
func (d *Driver) Setup() network.Setup {
	s := network.Setup{
		IfName:  d.plan.ifName,
		Addr:    d.plan.addr,
		Gateway: d.plan.gateway,
		MTU:     d.plan.mtu,
	}
	if d.plan.gateway.IsValid() {
		s.DNS = []netip.Addr{d.plan.gateway}
	}
	if d.plan.gateway6.IsValid() {
		s.Addr6 = d.plan.addr6
		s.Gateway6 = d.plan.gateway6
		s.DNS = append(s.DNS, d.plan.gateway6)
	}
	return s
}

// Start asks the child for its tap device and runs the stack on it. The
// stack keeps running until Close.
func (d *Driver) Start(ctx context.Context, c network.Child) (network.Setup, error) {
	d.mu.Lock()
	if d.started || d.closing {
		d.mu.Unlock()
		return network.Setup{}, fmt.Errorf("start %s: driver already started or closed; create a new one with netstack.New", Name)
	}
	d.started = true
	d.mu.Unlock()
	if c.OpenTap == nil {
		return network.Setup{}, fmt.Errorf("start %s: the launcher passed no OpenTap; this driver needs the child to open %s", Name, d.plan.ifName)
	}
	f, err := c.OpenTap(ctx, d.plan.ifName)
	if err != nil {
		// The launcher's error already names the device and the step.
		return network.Setup{}, err
	}
	// fdbased wants a bare fd it can make non-blocking and poll itself; a
	// dup keeps it independent of the *os.File and of Go's poller.
	fd, err := syscall.Dup(int(f.Fd()))
	f.Close()
	if err != nil {
		return network.Setup{}, fmt.Errorf("dup tap fd: %w", err)
	}
	syscall.CloseOnExec(fd)
	d.mu.Lock()
	d.tapFD = fd // from here on teardown closes it
	d.mu.Unlock()
	if err := d.run(fd); err != nil {
		// Leave nothing running even if the caller never calls Close;
		// a later Close then reports how the teardown went.
		d.closeOnce.Do(func() { d.closeErr = d.teardown() })
		return network.Setup{}, err
	}
	return d.Setup(), nil
}

// run builds the stack on the tap fd. On error nothing keeps running.
func (d *Driver) run(fd int) error {
	ep, err := d.linkEndpoint(fd)
	if err != nil {
		return fmt.Errorf("attach stack to tap %s: %w", d.plan.ifName, err)
	}
	d.mu.Lock()
	d.link = ep
	d.mu.Unlock()
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocol, arp.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol},
	})
	d.mu.Lock()
	d.stack = s // teardown destroys it
	d.mu.Unlock()
	fail := func(op string, e tcpip.Error) error {
		return fmt.Errorf("%s: %s", op, e)
	}
	if err := tuneTCP(s); err != nil {
		return fail("tune tcp", err)
	}
	if e := s.CreateNIC(nicID, ep); e != nil {
		ep.Close() // never attached, so the stack will not close it
		return fail("create nic", e)
	}
	// Promiscuous and spoofing: the stack accepts packets for any
	// destination (it stands in for the whole outside world) and answers
	// from that destination's address.
	if e := s.SetPromiscuousMode(nicID, true); e != nil {
		return fail("set promiscuous", e)
	}
	if e := s.SetSpoofing(nicID, true); e != nil {
		return fail("set spoofing", e)
	}
	var routes []tcpip.Route
	var dns []tcpip.FullAddress
	if d.plan.gateway.IsValid() {
		// The gateway must be a real address so ARP and NDP for it are
		// answered; so is slirp4netns' DNS address, which answers DNS only.
		for _, a := range []netip.Addr{d.plan.gateway, d.plan.dns} {
			pa := tcpip.ProtocolAddress{Protocol: ipv4.ProtocolNumber, AddressWithPrefix: tcpip.AddressWithPrefix{
				Address: tcpip.AddrFrom4(a.As4()), PrefixLen: d.plan.addr.Bits()}}
			if e := s.AddProtocolAddress(nicID, pa, stack.AddressProperties{}); e != nil {
				return fail("add address "+a.String(), e)
			}
			// DNS listens on both (resolv.conf names the gateway).
			dns = append(dns, tcpip.FullAddress{NIC: nicID, Addr: tcpip.AddrFrom4(a.As4()), Port: 53})
		}
		routes = append(routes, tcpip.Route{Destination: header4Any(), NIC: nicID})
	}
	if d.plan.gateway6.IsValid() {
		gw6 := tcpip.ProtocolAddress{Protocol: ipv6.ProtocolNumber, AddressWithPrefix: tcpip.AddressWithPrefix{
			Address: tcpip.AddrFrom16(d.plan.gateway6.As16()), PrefixLen: d.plan.addr6.Bits()}}
		if e := s.AddProtocolAddress(nicID, gw6, stack.AddressProperties{}); e != nil {
			return fail("add ipv6 gateway address", e)
		}
		routes = append(routes, tcpip.Route{Destination: header6Any(), NIC: nicID})
	}
	s.SetRouteTable(routes)

	tf := tcp.NewForwarder(s, 0, maxPendingSYN, d.handleTCP)
	s.SetTransportProtocolHandler(tcp.ProtocolNumber, tf.HandlePacket)
	uf := udp.NewForwarder(s, d.handleUDP)
	s.SetTransportProtocolHandler(udp.ProtocolNumber, uf.HandlePacket)

	// DNS must listen before the child's first query.
	if d.plan.gateway6.IsValid() {
		dns = append(dns, tcpip.FullAddress{NIC: nicID, Addr: tcpip.AddrFrom16(d.plan.gateway6.As16()), Port: 53})
	}
	for _, a := range dns {
		proto := ipv4.ProtocolNumber
		if a.Addr.Len() == 16 {
			proto = ipv6.ProtocolNumber
		}
		c, err := gonet.DialUDP(s, &a, nil, proto)
		if err != nil {
			return fmt.Errorf("listen for DNS on %s:53 in the stack: %w", a.Addr, err)
		}
		if !d.hold(c) || !d.track() {
			return fmt.Errorf("start %s: closed while starting", Name)
		}
		go func() {
			defer d.wg.Done()
			d.serveDNS(c)
		}()
	}
	d.log.Debug("stack running", "ifname", d.plan.ifName, "mtu", d.plan.mtu, "child", d.plan.addr, "gateway", d.plan.gateway)
	return nil
}

// linkEndpoint picks how to drive the tap: with a virtio-net header when the
// child opened it with IFF_VNET_HDR (segmentation offload both ways), else
// gVisor's fdbased endpoint, one frame per read.
func (d *Driver) linkEndpoint(fd int) (stack.LinkEndpoint, error) {
	vnet, err := tapHasVnetHdr(fd)
	if err != nil {
		return nil, fmt.Errorf("query tap flags (TUNGETIFF): %w", err)
	}
	if vnet {
		d.log.Debug("tap has a virtio-net header: using segmentation offload")
		return newVnetEndpoint(fd, uint32(d.plan.mtu), linkAddr)
	}
	return fdbased.New(&fdbased.Options{
		FDs:            []int{fd},
		MTU:            uint32(d.plan.mtu),
		EthernetHeader: true,
		Address:        linkAddr,
		// The namespace's kernel has already computed checksums on what it
		// writes to a tap without a vnet header; checking them again costs
		// CPU for nothing. Sending still computes them: the kernel checks.
		RXChecksumOffload: true,
	})
}

// maxPendingSYN bounds connections whose host-side dial is still running.
// Beyond it SYNs are dropped and retried by the child, never refused.
const maxPendingSYN = 1024

func tuneTCP(s *stack.Stack) tcpip.Error {
	sack := tcpip.TCPSACKEnabled(true)
	if e := s.SetTransportProtocolOption(tcp.ProtocolNumber, &sack); e != nil {
		return e
	}
	// Buffers grow on demand, so a large maximum costs nothing when idle;
	// 4 MiB covers a loopback-speed path.
	rcv := tcpip.TCPReceiveBufferSizeRangeOption{Min: 4 << 10, Default: 256 << 10, Max: 4 << 20}
	if e := s.SetTransportProtocolOption(tcp.ProtocolNumber, &rcv); e != nil {
		return e
	}
	snd := tcpip.TCPSendBufferSizeRangeOption{Min: 4 << 10, Default: 256 << 10, Max: 4 << 20}
	if e := s.SetTransportProtocolOption(tcp.ProtocolNumber, &snd); e != nil {
		return e
	}
	mod := tcpip.TCPModerateReceiveBufferOption(true)
	return s.SetTransportProtocolOption(tcp.ProtocolNumber, &mod)
}

func header4Any() tcpip.Subnet {
	sn, _ := tcpip.NewSubnet(tcpip.AddrFrom4([4]byte{}), tcpip.MaskFromBytes(make([]byte, 4)))
	return sn
}

func header6Any() tcpip.Subnet {
	sn, _ := tcpip.NewSubnet(tcpip.AddrFrom16([16]byte{}), tcpip.MaskFromBytes(make([]byte, 16)))
	return sn
}

// track registers a goroutine about to start; it reports false once Close
// has begun, and the caller must then not start it.
func (d *Driver) track() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closing {
		return false
	}
	d.wg.Add(1)
	return true
}

// hold registers sockets so Close can unblock the goroutines using them.
// It reports false (and closes them) once Close has begun.
func (d *Driver) hold(cs ...io.Closer) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closing {
		for _, c := range cs {
			c.Close()
		}
		return false
	}
	for _, c := range cs {
		d.conns[c] = struct{}{}
	}
	return true
}

func (d *Driver) release(cs ...io.Closer) {
	d.mu.Lock()
	for _, c := range cs {
		delete(d.conns, c)
	}
	d.mu.Unlock()
	for _, c := range cs {
		c.Close()
	}
}

// Close stops the stack and every flow, and returns once all goroutines the
// driver started have ended and the tap fd is closed (which removes the
// device). A second Close returns an error wrapping os.ErrClosed.
func (d *Driver) Close() error {
	d.mu.Lock()
	if d.closeCalled {
		d.mu.Unlock()
		return fmt.Errorf("close %s: %w", Name, os.ErrClosed)
	}
	d.closeCalled = true
	d.mu.Unlock()
	d.closeOnce.Do(func() { d.closeErr = d.teardown() })
	return d.closeErr
}

func (d *Driver) teardown() error {
	d.mu.Lock()
	d.closing = true
	conns := d.conns
	d.conns = map[io.Closer]struct{}{}
	s := d.stack
	link := d.link
	fd := d.tapFD
	d.tapFD = -1
	d.mu.Unlock()

	// Our goroutines first, while the stack still runs: cancelling stops
	// host dials, and closing a flow's sockets ends both its directions.
	// Only then is the stack torn down, so nothing of ours touches it late.
	d.cancel()
	for c := range conns {
		c.Close()
	}
	d.wg.Wait()
	if link != nil {
		// Stop the tap reader before Destroy: Destroy detaches the link
		// while holding the stack's lock, and a reader caught delivering
		// a packet needs that lock to finish, so waiting for it there
		// deadlocks. Detaching again inside Destroy is then a no-op.
		link.Attach(nil)
	}
	if s != nil {
		s.Destroy()
	}
	if fd >= 0 {
		if err := syscall.Close(fd); err != nil {
			return fmt.Errorf("close tap fd: %w", err)
		}
	}
	return nil
}
