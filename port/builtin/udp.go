package builtin

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/unroot/unroot/internal/sys"
)

// UDPIdleTimeout is how long a UDP flow (one per client address) lives
// without traffic in either direction, as in RootlessKit and docker-proxy.
var UDPIdleTimeout = 90 * time.Second

// UDPMaxFlows caps the flows of one published UDP port. A new client past
// the cap takes the place of the flow idle the longest among a few picked
// at random: a flood from many source addresses then mostly replaces its
// own flows, not those with traffic, and the port's memory stays bounded
// (a socket and about 6 KiB a flow) whatever the descriptor limit.
var UDPMaxFlows = 4096

// udpEvictSample is how many flows a new client past the cap looks at.
const udpEvictSample = 8

const udpBufSize = 65535

// udpBufs lends the reply path a datagram buffer only while a datagram is
// at hand: a flow waiting for its server's answer holds none, so ten
// thousand flows (DNS clients use a new port per query) do not hold 640 MB.
var udpBufs = sync.Pool{New: func() any { b := make([]byte, udpBufSize); return &b }}

// udpFlow relays between one client address and the child.
type udpFlow struct {
	child *net.UDPConn
	oob   []byte       // control message replying from the address the client wrote to
	last  atomic.Int64 // unix nanoseconds of the last packet either way
}

// serveUDP reads datagrams from the listener and hands each to its client's
// flow, creating flows on demand. Each flow's reply goroutine writes the
// child's answers back to the client from the listener's address.
// v6sock tells how pc's IP_PKTINFO control messages are spelled (see
// enablePktinfo).
func (d *Driver) serveUDP(ctx context.Context, pc *net.UDPConn, v6sock bool, p *pool, target netip.AddrPort) {
	var (
		mu     sync.Mutex
		flows  = map[netip.AddrPort]*udpFlow{}
		wg     sync.WaitGroup
		capped bool // the cap was reached once: said so
	)
	defer func() {
		mu.Lock()
		for _, f := range flows {
			f.child.Close()
		}
		mu.Unlock()
		wg.Wait()
		// The reply goroutines removed their flows from the count.
	}()
	buf := make([]byte, udpBufSize)
	oob := make([]byte, 128)
	var bo backoff
	for {
		n, oobn, _, client, err := pc.ReadMsgUDPAddrPort(buf, oob)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			wait := bo.step()
			d.log.Warn("udp read failed; retrying", "addr", pc.LocalAddr(), "err", err, "retry_in", wait)
			if !sleep(ctx, wait) {
				return
			}
			continue
		}
		bo.reset()
		client = netip.AddrPortFrom(client.Addr().Unmap(), client.Port())
		mu.Lock()
		f := flows[client]
		mu.Unlock()
		if f == nil {
			mu.Lock()
			if len(flows) >= UDPMaxFlows {
				if !capped {
					capped = true
					d.log.Warn("udp port at its flow cap; new clients replace the idlest flows", "addr", pc.LocalAddr(), "flows", len(flows))
				}
				d.evictUDPFlow(flows)
			}
			mu.Unlock()
			c, err := d.dialUDP(ctx, p, target, client)
			if err != nil {
				d.log.Debug("udp flow to the child failed; dropping the datagram", "client", client, "err", err)
				continue
			}
			f = &udpFlow{child: c, oob: sys.PktinfoSrc(v6sock, sys.PktinfoDst(oob[:oobn]))}
			f.last.Store(time.Now().UnixNano())
			mu.Lock()
			flows[client] = f
			d.udpFlows.Add(1)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				d.udpReplies(pc, f, client)
				mu.Lock()
				if flows[client] == f {
					delete(flows, client)
					d.udpFlows.Add(-1)
				}
				mu.Unlock()
				f.child.Close()
			}()
		}
		f.last.Store(time.Now().UnixNano())
		if _, err := f.child.Write(buf[:n]); err != nil {
			d.log.Debug("udp write to the child failed", "client", client, "err", err)
		}
	}
}

// evictUDPFlow closes the flow idle the longest among udpEvictSample of
// flows (map order is random). Its reply goroutine then ends. The caller
// holds the flows' lock.
func (d *Driver) evictUDPFlow(flows map[netip.AddrPort]*udpFlow) {
	var (
		victim netip.AddrPort
		vf     *udpFlow
		n      int
	)
	for a, f := range flows {
		if vf == nil || f.last.Load() < vf.last.Load() {
			victim, vf = a, f
		}
		if n++; n == udpEvictSample {
			break
		}
	}
	if vf != nil {
		delete(flows, victim)
		d.udpFlows.Add(-1)
		vf.child.Close()
	}
}

// udpReplies copies the child's datagrams back to client until the flow is
// idle for UDPIdleTimeout or its socket is closed.
func (d *Driver) udpReplies(pc *net.UDPConn, f *udpFlow, client netip.AddrPort) {
	rc, err := f.child.SyscallConn()
	if err != nil {
		return
	}
	for {
		idleUntil := time.Unix(0, f.last.Load()).Add(UDPIdleTimeout)
		f.child.SetReadDeadline(idleUntil)
		// The poller waits for a datagram; the buffer is borrowed once
		// one is queued, and returned when it has been passed on.
		var rerr, werr error
		err := rc.Read(func(fd uintptr) bool {
			bp := udpBufs.Get().(*[]byte)
			defer udpBufs.Put(bp)
			n, err := sys.Read(int(fd), *bp)
			if errors.Is(err, sys.EAGAIN) {
				return false
			}
			if err != nil {
				rerr = err
				return true
			}
			_, _, werr = pc.WriteMsgUDPAddrPort((*bp)[:n], f.oob, client)
			return true
		})
		if err == nil {
			err = rerr
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				if time.Unix(0, f.last.Load()).Add(UDPIdleTimeout).After(time.Now()) {
					continue // traffic came from the client meanwhile
				}
				return
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// ECONNREFUSED from an ICMP port unreachable: nobody listens
			// yet; keep the flow, the server may come up.
			continue
		}
		f.last.Store(time.Now().UnixNano())
		if werr != nil && errors.Is(werr, net.ErrClosed) {
			return
		}
	}
}
