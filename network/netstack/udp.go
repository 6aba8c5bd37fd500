package netstack

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"
)

const (
	// udpIdle ends a UDP flow with no packet either way for this long, the
	// same order as the kernel's conntrack UDP timeout for a flow that saw
	// replies.
	udpIdle = 2 * time.Minute
	// dnsIdle ends a flow to some resolver's port 53 sooner.
	dnsIdle = 20 * time.Second
	// dnsTimeout is how long one upstream resolver gets before the next.
	dnsTimeout = 3 * time.Second
	// maxDNSInFlight bounds queries being forwarded at once; beyond it
	// queries are dropped and the client's resolver retries.
	maxDNSInFlight = 256
	// maxDatagram fits any UDP payload.
	maxDatagram = 65535
	// udpFlowBuf is the most a flow's datagrams may queue each way (the
	// host's socket buffers are capped by net.core.[rw]mem_max).
	udpFlowBuf = 4 << 20
)

// handleUDP is called by the stack for the first packet of a flow with no
// endpoint yet. It must not block: the flow runs on its own goroutines.
func (d *Driver) handleUDP(r *udp.ForwarderRequest) bool {
	id := r.ID()
	dst, v := d.plan.route(addrPort(id.LocalAddress, id.LocalPort), d.cfg.DisableHostLoopback)
	if v == refuse || v == toDNS {
		// DNS has its own endpoint (serveDNS); a packet for it that lands
		// here arrived while it was being closed.
		d.log.Debug("udp refused", "dst", dst)
		return true // dropped, as a firewall would
	}
	var wq waiter.Queue
	ep, terr := r.CreateEndpoint(&wq)
	if terr != nil {
		d.log.Debug("udp endpoint", "dst", dst, "err", terr)
		return true
	}
	// A flow may carry a tunnel (VXLAN from a pod network): a burst of
	// full-size datagrams must wait in buffers, not be dropped while the
	// relay catches up; memory is taken only as datagrams queue.
	ep.SocketOptions().SetReceiveBufferSize(udpFlowBuf, false)
	guest := gonet.NewUDPConn(&wq, ep)
	host, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(dst))
	if err != nil {
		d.log.Debug("udp dial failed", "dst", dst, "err", err)
		guest.Close()
		return true
	}
	host.SetReadBuffer(udpFlowBuf)
	host.SetWriteBuffer(udpFlowBuf)
	if !d.track() {
		guest.Close()
		host.Close()
		return true
	}
	go func() {
		defer d.wg.Done()
		if !d.hold(guest, host) {
			return
		}
		defer d.release(guest, host)
		idle := udpIdle
		if dst.Port() == 53 {
			// A resolver query is one exchange; do not keep its socket
			// for minutes (a busy namespace makes hundreds).
			idle = dnsIdle
		}
		relayUDP(flow{guest: guest, ep: ep, wq: &wq, host: host}, idle)
	}()
	return true
}

// flow is one UDP flow: the stack endpoint facing the namespace (read
// directly, written through gonet) and the connected host socket.
type flow struct {
	guest *gonet.UDPConn
	ep    tcpip.Endpoint
	wq    *waiter.Queue
	host  *net.UDPConn
}

// udpBufs hold one datagram each. A flow takes a buffer only once a
// datagram is ready and gives it back right after sending it on, so an idle
// flow holds no buffer: many quiet flows cost sockets, not memory.
var udpBufs = sync.Pool{New: func() any { b := make([]byte, maxDatagram); return &b }}

// relayUDP copies datagrams both ways until the flow has been idle in both
// directions for idle, or either side is closed.
func relayUDP(f flow, idle time.Duration) {
	var last atomic.Int64
	last.Store(time.Now().UnixNano())
	deadline := func() time.Time { return time.Unix(0, last.Load()).Add(idle) }
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer f.guest.Close() // wakes the other direction
		rc, err := f.host.SyscallConn()
		if err != nil {
			return
		}
		for {
			f.host.SetReadDeadline(deadline())
			bp, n, err := hostRecv(rc)
			switch {
			case errors.Is(err, os.ErrDeadlineExceeded) && time.Now().Before(deadline()):
				continue // the other direction is still busy
			case errors.Is(err, syscall.ECONNREFUSED):
				// ICMP port unreachable from an earlier datagram; the
				// flow itself stays usable.
				continue
			case err != nil:
				return
			}
			last.Store(time.Now().UnixNano())
			f.guest.Write((*bp)[:n])
			udpBufs.Put(bp)
		}
	}()
	entry, ready := waiter.NewChannelEntry(waiter.ReadableEvents)
	f.wq.EventRegister(&entry)
	defer f.wq.EventUnregister(&entry)
	for {
		bp, n, err := guestRecv(f.ep, ready, deadline)
		if err != nil {
			break
		}
		last.Store(time.Now().UnixNano())
		f.host.Write((*bp)[:n])
		udpBufs.Put(bp)
	}
	f.host.Close()
	<-done
}

// hostRecv waits for a datagram on the host socket without holding a
// buffer, then reads it into one from udpBufs.
func hostRecv(rc syscall.RawConn) (*[]byte, int, error) {
	var bp *[]byte
	var n int
	var rerr error
	err := rc.Read(func(fd uintptr) bool {
		b := udpBufs.Get().(*[]byte)
		n, _, rerr = syscall.Recvfrom(int(fd), *b, syscall.MSG_DONTWAIT)
		if rerr == syscall.EAGAIN {
			udpBufs.Put(b)
			return false
		}
		bp = b
		return true
	})
	if err == nil && rerr != nil {
		udpBufs.Put(bp)
		err = rerr
	}
	if err != nil {
		return nil, 0, err
	}
	return bp, n, nil
}

// errIdle ends a flow whose idle time has passed.
var errIdle = errors.New("udp flow idle")

// guestRecv waits until the stack endpoint has a datagram, then reads it
// into a buffer from udpBufs. It gives up once deadline() has passed.
func guestRecv(ep tcpip.Endpoint, ready <-chan struct{}, deadline func() time.Time) (*[]byte, int, error) {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		bp := udpBufs.Get().(*[]byte)
		w := tcpip.SliceWriter(*bp)
		res, terr := ep.Read(&w, tcpip.ReadOptions{})
		if terr == nil {
			return bp, res.Count, nil
		}
		udpBufs.Put(bp)
		if _, ok := terr.(*tcpip.ErrWouldBlock); !ok {
			return nil, 0, errors.New(terr.String()) // closed
		}
		wait := time.Until(deadline())
		if wait <= 0 {
			return nil, 0, errIdle
		}
		if timer == nil {
			timer = time.NewTimer(wait)
		} else {
			timer.Reset(wait)
		}
		select {
		case <-ready:
		case <-timer.C:
		}
	}
}

// serveDNS answers queries to the DNS address on one stack endpoint, so
// every client shares a single read buffer however many source ports its
// resolver uses; each query is forwarded on its own goroutine. It returns
// when conn is closed (Close).
func (d *Driver) serveDNS(conn *gonet.UDPConn) {
	sem := make(chan struct{}, maxDNSInFlight)
	buf := make([]byte, maxDatagram)
	for {
		n, from, err := conn.ReadFrom(buf)
		if err != nil {
			return
		}
		select {
		case sem <- struct{}{}:
		default:
			// Too many in flight: say so rather than leave the client
			// waiting for its timeout.
			if r := dnsFailure(buf[:n], rcodeServFail); r != nil {
				conn.WriteTo(r, from)
			}
			continue
		}
		if !d.track() {
			return
		}
		q := append([]byte(nil), buf[:n]...)
		go func() {
			defer d.wg.Done()
			defer func() { <-sem }()
			bp := dnsBufs.Get().(*[]byte)
			defer dnsBufs.Put(bp)
			if m := d.askUpstreams(q, *bp); m > 0 {
				conn.WriteTo((*bp)[:m], from)
			} else if r := dnsFailure(q, rcodeServFail); r != nil && d.ctx.Err() == nil {
				// No upstream answered: SERVFAIL, so the client moves on
				// now instead of after its own timeout.
				conn.WriteTo(r, from)
			}
		}()
	}
}

var dnsBufs = sync.Pool{New: func() any { b := make([]byte, maxDatagram); return &b }}

// askUpstreams sends one query to each resolver in turn and returns the
// length of the first answer, or 0.
func (d *Driver) askUpstreams(q, resp []byte) int {
	for _, ns := range d.nameservers() {
		if d.ctx.Err() != nil {
			return 0
		}
		c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(ns))
		if err != nil {
			continue
		}
		d.hold(c)
		c.SetDeadline(time.Now().Add(dnsTimeout))
		n := 0
		if _, err := c.Write(q); err == nil {
			for {
				n, err = c.Read(resp)
				if err != nil {
					n = 0
					break
				}
				// Only the answer to this query (same ID) counts.
				if n >= 2 && len(q) >= 2 && resp[0] == q[0] && resp[1] == q[1] {
					break
				}
			}
		}
		d.release(c)
		if n > 0 {
			return n
		}
	}
	return 0
}

// nameservers reads the host's resolvers now, so a resolv.conf changed by
// the host (network switch, VPN) takes effect on the next query.
func (d *Driver) nameservers() []netip.AddrPort {
	if d.upstreams != nil {
		return d.upstreams
	}
	data, err := os.ReadFile(d.resolvConf)
	if err != nil {
		d.log.Debug("read resolv.conf", "path", d.resolvConf, "err", err)
	}
	ns := parseNameservers(data)
	if len(ns) == 0 {
		ns = []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:53")}
	}
	return ns
}
