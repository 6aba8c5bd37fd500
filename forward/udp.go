package forward

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"
)

// UDPIdleTimeout ends a UDP flow (one per client address inside) that
// carried nothing either way for this long, as published UDP ports do.
var UDPIdleTimeout = 90 * time.Second

// udpMaxFlows caps the flows of one forward; past it a new client's
// datagrams are dropped until a flow ends.
const udpMaxFlows = 1024

const udpBufSize = 65535

// startUDP relays datagrams that clients inside send to the socket fd
// (bound inside the namespace) to the host service, each client through a
// host socket of its own, and the service's answers back to that client.
func (f *Forwarder) startUDP(fd int, sp Spec) (func(), error) {
	file := os.NewFile(uintptr(fd), "forward-udp")
	pc, err := net.FilePacketConn(file)
	file.Close()
	if err != nil {
		return nil, err
	}
	ns := pc.(*net.UDPConn)
	u := &udpForward{f: f, sp: sp, ns: ns, flows: map[netip.AddrPort]*net.UDPConn{}, fails: newFailureLog(sp, f.log, f.failEvery)}
	u.wg.Add(1)
	go u.serve()
	return func() {
		ns.Close()
		u.mu.Lock()
		u.closed = true
		for _, c := range u.flows {
			c.Close()
		}
		u.mu.Unlock()
		u.wg.Wait()
		u.fails.close()
	}, nil
}

type udpForward struct {
	f      *Forwarder
	sp     Spec
	ns     *net.UDPConn
	wg     sync.WaitGroup
	mu     sync.Mutex
	closed bool
	flows  map[netip.AddrPort]*net.UDPConn
	fails  *failureLog
}

func (u *udpForward) serve() {
	defer u.wg.Done()
	buf := make([]byte, udpBufSize)
	for {
		n, client, err := u.ns.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			u.f.log.Debug("udp forward read failed", "forward", u.sp.String(), "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		c := u.flow(client)
		if c == nil {
			continue
		}
		c.SetReadDeadline(time.Now().Add(UDPIdleTimeout))
		if _, err := c.Write(buf[:n]); err != nil {
			u.fails.failed(err)
		}
	}
}

// flow returns client's host socket, making it (and the goroutine that
// relays its answers) on the client's first datagram.
func (u *udpForward) flow(client netip.AddrPort) *net.UDPConn {
	u.mu.Lock()
	defer u.mu.Unlock()
	if c, ok := u.flows[client]; ok || u.closed {
		return c
	}
	if len(u.flows) >= udpMaxFlows {
		u.f.log.Debug("udp forward at its flow cap; dropping a new client's datagram", "forward", u.sp.String())
		return nil
	}
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(u.sp.hostAddrPort()))
	if err != nil {
		u.fails.failed(err)
		return nil
	}
	u.flows[client] = c
	u.wg.Add(1)
	go u.replies(client, c)
	return c
}

// replies relays the service's answers to client until the flow idles out
// or the forward stops.
func (u *udpForward) replies(client netip.AddrPort, c *net.UDPConn) {
	defer u.wg.Done()
	defer func() {
		u.mu.Lock()
		if u.flows[client] == c {
			delete(u.flows, client)
		}
		u.mu.Unlock()
		c.Close()
	}()
	buf := make([]byte, udpBufSize)
	for {
		c.SetReadDeadline(time.Now().Add(UDPIdleTimeout))
		n, err := c.Read(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// ECONNREFUSED from an ICMP error: the service is not up
			// (yet); keep the flow for its next datagram.
			u.fails.failed(err)
			continue
		}
		if _, err := u.ns.WriteToUDPAddrPort(buf[:n], client); err != nil && errors.Is(err, net.ErrClosed) {
			return
		}
	}
}
