package netstack

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"
)

const (
	// udpIdle ends a UDP flow with no packet either way for this long, the
	// same order as the kernel's conntrack UDP timeout for a flow that saw
	// replies.
	udpIdle = 2 * time.Minute
	// dnsTimeout is how long one upstream resolver gets before the next.
	dnsTimeout = 3 * time.Second
	// maxDatagram fits any UDP payload.
	maxDatagram = 65535
)

// handleUDP is called by the stack for the first packet of a flow with no
// endpoint yet. It must not block: the flow runs on its own goroutines.
func (d *Driver) handleUDP(r *udp.ForwarderRequest) bool {
	id := r.ID()
	dst, v := d.plan.route(addrPort(id.LocalAddress, id.LocalPort), d.cfg.DisableHostLoopback)
	if v == refuse {
		d.log.Debug("udp refused", "dst", dst)
		return true // dropped, as a firewall would
	}
	var wq waiter.Queue
	ep, terr := r.CreateEndpoint(&wq)
	if terr != nil {
		d.log.Debug("udp endpoint", "dst", dst, "err", terr)
		return true
	}
	guest := gonet.NewUDPConn(&wq, ep)
	if v == toDNS {
		if !d.track() {
			guest.Close()
			return true
		}
		go func() {
			defer d.wg.Done()
			if !d.hold(guest) {
				return
			}
			defer d.release(guest)
			d.serveDNS(guest)
		}()
		return true
	}
	host, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(dst))
	if err != nil {
		d.log.Debug("udp dial failed", "dst", dst, "err", err)
		guest.Close()
		return true
	}
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
		relayUDP(guest, host)
	}()
	return true
}

// relayUDP copies datagrams both ways until the flow has been idle in both
// directions for udpIdle, or either socket is closed.
func relayUDP(guest *gonet.UDPConn, host *net.UDPConn) {
	var last atomic.Int64
	last.Store(time.Now().UnixNano())
	done := make(chan struct{})
	go func() {
		defer close(done)
		pumpUDP(host, guest, &last)
		host.Close()
	}()
	pumpUDP(guest, host, &last)
	guest.Close()
	<-done
}

type datagramConn interface {
	Read([]byte) (int, error)
	Write([]byte) (int, error)
	SetReadDeadline(time.Time) error
}

func pumpUDP(dst, src datagramConn, last *atomic.Int64) {
	buf := make([]byte, maxDatagram)
	for {
		src.SetReadDeadline(time.Unix(0, last.Load()).Add(udpIdle))
		n, err := src.Read(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && time.Since(time.Unix(0, last.Load())) < udpIdle {
				continue // the other direction is still busy
			}
			// A connected host socket reports ICMP port-unreachable as
			// ECONNREFUSED on the next read; the flow itself stays usable.
			if errors.Is(err, syscall.ECONNREFUSED) {
				continue
			}
			return
		}
		last.Store(time.Now().UnixNano())
		dst.Write(buf[:n])
	}
}

// serveDNS answers every query on one child flow by asking the host's
// resolvers in turn, like the C library would. Queries are independent, so
// a slow upstream only delays its own query's flow.
func (d *Driver) serveDNS(guest *gonet.UDPConn) {
	buf := make([]byte, maxDatagram)
	resp := make([]byte, maxDatagram)
	for {
		guest.SetReadDeadline(time.Now().Add(udpIdle))
		n, err := guest.Read(buf)
		if err != nil {
			return
		}
		if m := d.askUpstreams(buf[:n], resp); m > 0 {
			guest.Write(resp[:m])
		}
	}
}

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
			n, err = c.Read(resp)
			if err != nil {
				n = 0
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
