package builtin

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/unroot/unroot/internal/lograte"
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

// Forwarding to the child is batched: one recvmmsg reads up to udpBatch
// datagrams (with UDP GRO, runs of equal datagrams arrive as one buffer),
// and consecutive datagrams of one client that UDP_SEGMENT can carry (equal
// sizes, the last one no larger) leave for the child in one sendmsg. A
// VXLAN or WireGuard stream, a run of full-size datagrams from one peer,
// thus costs a few system calls per 64 KiB, not two per datagram.
const (
	udpBatch = 32
	// udpSockBuf is asked for both buffers of the listener and of each
	// flow's socket; the kernel caps it at net.core.[rw]mem_max, except
	// that a privileged launcher forces the listener's past the caps
	// (sys.SetUDPListener; flows never are).
	udpSockBuf = 4 << 20
	// udpMaxRun bounds the bytes of one segmented send: an IPv4 datagram
	// holds 65,507 bytes, all of a UDP_SEGMENT send must fit one.
	udpMaxRun = 65000
	// udpSocketWait bounds how long a new client's datagram waits for a
	// socket from the child while the listener's other clients wait too.
	udpSocketWait = 2 * time.Second
)

// checkUDPBuffer says once (at info level: --debug) when the kernel granted
// a UDP listener less receive buffer than udpSockBuf. The listener's
// buffer is what holds a client's datagrams while the relay waits for a
// CPU; on a busy machine a small one drops them before the relay sees
// them. Unprivileged, net.core.rmem_max caps it (208 KiB by default).
func (d *Driver) checkUDPBuffer(pc *net.UDPConn) {
	rc, err := pc.SyscallConn()
	if err != nil {
		return
	}
	var rcv int
	rc.Control(func(fd uintptr) { rcv, _, err = sys.SocketBuffers(int(fd)) })
	// The kernel reports twice what it granted.
	if err != nil || rcv/2 >= udpSockBuf || d.udpCapped.Swap(true) {
		return
	}
	d.log.Info("udp port's receive buffer is capped by net.core.rmem_max; bursts beyond it are dropped while the relay waits for a CPU; to raise it: sysctl -w net.core.rmem_max=4194304",
		"addr", pc.LocalAddr(), "granted", rcv/2, "wanted", udpSockBuf)
}

// udpFlow relays between one client address and the child.
type udpFlow struct {
	child *net.UDPConn
	rc    syscall.RawConn
	oob   []byte       // control message replying from the address the client wrote to
	last  atomic.Int64 // unix nanoseconds of the last packet either way

	// The send under way, touched only by the serve loop: send is bound
	// once so a send allocates nothing.
	noGSO bool // the kernel refused UDP_SEGMENT on this socket
	iov   []sys.Iovec
	ctl   []byte
	serr  error
	send  func(fd uintptr) bool
}

func (f *udpFlow) sendNow(fd uintptr) bool {
	f.serr = sys.SendIovecs(int(fd), f.iov, f.ctl)
	return f.serr != sys.EAGAIN
}

// udpSlot is what the serve loop learned of one datagram of a batch.
type udpSlot struct {
	b      []byte
	client netip.AddrPort
	dst    netip.Addr
	seg    int // size of its datagrams: the GRO size, or its length
}

// udpServer is one UDP listener's serve loop: its flows, one per client
// address, and the buffers a batch of datagrams passes through.
type udpServer struct {
	d      *Driver
	ctx    context.Context
	pc     *net.UDPConn
	v6sock bool // how pc's IP_PKTINFO control messages are spelled (see enablePktinfo)
	p      *pool
	target netip.AddrPort

	mu     sync.Mutex
	flows  map[netip.AddrPort]*udpFlow
	wg     sync.WaitGroup // the flows' reply goroutines
	capped bool           // the cap was reached once: said so
	cut    bool           // a truncated datagram was seen: said so

	// The batch under way, touched only by the serve loop: recv is bound
	// once so a read allocates nothing.
	batch *sys.UDPBatch
	n     int // datagrams the last read returned
	rerr  error
	recv  func(fd uintptr) bool
	slots [udpBatch]udpSlot
	iov   [sys.UDPMaxSegments]sys.Iovec
	ctl   []byte
}

// serveUDP reads datagrams from the listener and hands each to its client's
// flow, creating flows on demand. Each flow's reply goroutine writes the
// child's answers back to the client from the listener's address.
// v6sock tells how pc's IP_PKTINFO control messages are spelled (see
// enablePktinfo).
func (d *Driver) serveUDP(ctx context.Context, pc *net.UDPConn, v6sock bool, p *pool, target netip.AddrPort) {
	s := &udpServer{d: d, ctx: ctx, pc: pc, v6sock: v6sock, p: p, target: target,
		flows: map[netip.AddrPort]*udpFlow{}, ctl: make([]byte, 64)}
	defer s.closeFlows()
	lrc, err := pc.SyscallConn()
	if err != nil {
		d.log.Warn("udp port stopped: no raw access to its socket", "addr", pc.LocalAddr(), "err", err)
		return
	}
	s.batch = sys.NewUDPBatch(udpBatch, udpBufSize)
	s.recv = s.recvNow
	var bo backoff
	var warn lograte.Limiter
	for {
		err := lrc.Read(s.recv)
		if err == nil {
			err = s.rerr
		}
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			wait := bo.step()
			warn.Log(ctx, d.log, slog.LevelWarn, "udp read failed; retrying", "addr", pc.LocalAddr(), "err", err, "retry_in", wait)
			if !sleep(ctx, wait) {
				return
			}
			continue
		}
		bo.reset()
		now := time.Now().UnixNano()
		s.forward(s.slotsOfBatch(), now)
	}
}

func (s *udpServer) recvNow(fd uintptr) bool {
	s.n, s.rerr = s.batch.Recv(int(fd))
	return s.rerr != sys.EAGAIN
}

// closeFlows closes every flow and waits for their reply goroutines, which
// remove their flows from the count.
func (s *udpServer) closeFlows() {
	s.mu.Lock()
	for _, f := range s.flows {
		f.child.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// slotsOfBatch fills s.slots with the datagrams of the batch just read,
// dropping truncated ones, and returns how many it holds.
func (s *udpServer) slotsOfBatch() int {
	m := 0
	for i := range s.n {
		b, client, oob, flags := s.batch.Datagram(i)
		if flags&sys.MSG_TRUNC != 0 {
			// Cannot happen with 64 KiB buffers; if it does, say so
			// rather than pass on a cut datagram.
			s.d.udpTruncated.Add(1)
			if !s.cut {
				s.cut = true
				s.d.log.Warn("udp datagram larger than the relay's buffer dropped", "addr", s.pc.LocalAddr(), "client", client, "buffer", udpBufSize)
			}
			continue
		}
		dst, gso := sys.ParseUDPControl(oob)
		seg := len(b)
		if gso > 0 && gso < len(b) {
			seg = gso
		}
		s.slots[m] = udpSlot{b: b, client: client, dst: dst, seg: seg}
		m++
	}
	return m
}

// forward sends the first m slots to their clients' flows, a run of one
// client's datagrams at a time. now stamps the flows' last traffic.
func (s *udpServer) forward(m int, now int64) {
	for i := 0; i < m; {
		sl := &s.slots[i]
		s.mu.Lock()
		f := s.flows[sl.client]
		s.mu.Unlock()
		if f == nil {
			if f = s.newFlow(sl.client, sl.dst); f == nil {
				i++
				continue
			}
		}
		f.last.Store(now)
		j, segs := s.runEnd(f, i, m)
		s.d.sendRun(f, s.slots[i:j], segs, s.iov[:], s.ctl)
		i = j
	}
}

// runEnd finds the run that starts at slot i (of m): the datagrams of its
// client one UDP_SEGMENT send to f can carry, each full but the last. It
// returns the slot after the run and how many datagrams the run carries.
func (s *udpServer) runEnd(f *udpFlow, i, m int) (end, segs int) {
	first := &s.slots[i]
	j, segs, bytes := i+1, udpSegs(first), len(first.b)
	for ; j < m && first.seg > 0 && !f.noGSO; j++ {
		t, prev := &s.slots[j], &s.slots[j-1]
		ts := udpSegs(t)
		if t.client != first.client || len(prev.b)%first.seg != 0 || t.seg != first.seg && !(t.seg < first.seg && len(t.b) == t.seg) ||
			segs+ts > sys.UDPMaxSegments || bytes+len(t.b) > udpMaxRun {
			break
		}
		segs += ts
		bytes += len(t.b)
	}
	return j, segs
}

// newFlow opens a flow from client (which wrote to dst) to the target and
// starts its reply goroutine; nil when no socket to the child could be had
// (the datagram is then dropped, as the network might).
func (s *udpServer) newFlow(client netip.AddrPort, dst netip.Addr) *udpFlow {
	s.makeRoom()
	fd, ok := s.socket(client)
	if !ok {
		return nil
	}
	c, err := s.d.dialUDP(s.ctx, fd, s.p.key.family, s.target, client, s.freeOne)
	if err != nil {
		s.d.log.Debug("udp flow to the child failed; dropping the datagram", "client", client, "err", err)
		return nil
	}
	f := &udpFlow{child: c, oob: sys.PktinfoSrc(s.v6sock, dst)}
	if f.rc, err = c.SyscallConn(); err != nil {
		c.Close()
		return nil
	}
	f.send = f.sendNow
	f.last.Store(time.Now().UnixNano())
	s.mu.Lock()
	s.flows[client] = f
	s.d.udpFlows.Add(1)
	s.mu.Unlock()
	s.wg.Add(1)
	go s.replies(f, client)
	return f
}

// makeRoom evicts the idlest flow when the port is at its flow cap.
func (s *udpServer) makeRoom() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.flows) < UDPMaxFlows {
		return
	}
	if !s.capped {
		s.capped = true
		s.d.log.Warn("udp port at its flow cap; new clients replace the idlest flows", "addr", s.pc.LocalAddr(), "flows", len(s.flows))
	}
	s.d.evictUDPFlow(s.flows)
}

// socket takes a socket in the child for client's new flow from the pool,
// waiting up to udpSocketWait for one.
func (s *udpServer) socket(client netip.AddrPort) (fd int, ok bool) {
	fd, ok = s.p.take()
	if !ok && s.p.starved.Load() && s.freeOne() {
		s.p.freed()
	}
	if ok {
		return fd, true
	}
	fd, err := s.p.getTimeout(s.ctx, udpSocketWait)
	if err != nil {
		s.d.log.Debug("no socket for a new udp flow; dropping the datagram", "client", client, "err", err)
		return 0, false
	}
	return fd, true
}

// freeOne evicts the idlest flow when descriptors ran out: it gives way
// rather than every new client waiting for idle flows to expire.
func (s *udpServer) freeOne() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.d.evictUDPFlow(s.flows)
}

// replies runs f's reply path until the flow ends, then removes and closes
// it.
func (s *udpServer) replies(f *udpFlow, client netip.AddrPort) {
	defer s.wg.Done()
	s.d.udpReplies(s.pc, f, client)
	s.mu.Lock()
	if s.flows[client] == f {
		delete(s.flows, client)
		s.d.udpFlows.Add(-1)
	}
	s.mu.Unlock()
	f.child.Close()
}

// udpSegs is how many datagrams s carries.
func udpSegs(s *udpSlot) int {
	if s.seg == 0 {
		return 1
	}
	return (len(s.b) + s.seg - 1) / s.seg
}

// sendRun sends run, segs datagrams of one client, to its flow: in one
// segmented send where the kernel allows, else one by one.
func (d *Driver) sendRun(f *udpFlow, run []udpSlot, segs int, iov []sys.Iovec, ctl []byte) {
	if segs > 1 && !f.noGSO {
		f.iov = iov[:len(run)]
		for k := range run {
			sys.SetIovec(&f.iov[k], run[k].b)
		}
		f.ctl = sys.UDPSegmentControl(ctl, run[0].seg)
		err := f.write()
		if err == nil || errors.Is(err, net.ErrClosed) {
			return
		}
		if !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.EIO) && !errors.Is(err, syscall.ENOPROTOOPT) && !errors.Is(err, syscall.EOPNOTSUPP) {
			d.log.Debug("udp write to the child failed", "err", err)
			return
		}
		// No UDP_SEGMENT here (an old kernel, a device without checksum
		// offload, a path MTU below the datagrams): one by one from now.
		f.noGSO = true
		d.log.Debug("udp flow sends datagrams one by one: segmented send refused", "err", err)
	}
	f.ctl = nil
	f.iov = iov[:1]
	for k := range run {
		b, seg := run[k].b, run[k].seg
		if seg == 0 {
			seg = len(b)
		}
		for {
			one := b[:min(seg, len(b))]
			sys.SetIovec(&f.iov[0], one)
			if err := f.write(); err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				d.log.Debug("udp write to the child failed", "len", len(one), "err", err)
			}
			b = b[len(one):]
			if len(b) == 0 {
				break
			}
		}
	}
}

// write sends f.iov with f.ctl, waiting while the socket's buffer is full.
func (f *udpFlow) write() error {
	f.serr = nil
	if err := f.rc.Write(f.send); err != nil {
		return err
	}
	return f.serr
}

// evictUDPFlow closes the flow idle the longest among udpEvictSample of
// flows (map order is random) and reports whether there was one. Its reply
// goroutine then ends. The caller holds the flows' lock.
func (d *Driver) evictUDPFlow(flows map[netip.AddrPort]*udpFlow) bool {
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
	return vf != nil
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
