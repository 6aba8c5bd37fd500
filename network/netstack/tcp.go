package netstack

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// dialTimeout bounds the host-side connect; the child's SYN waits that long.
const dialTimeout = 30 * time.Second

// copyBufSize is the per-direction relay buffer. Large buffers cut the
// number of stack round trips per byte (RootlessKit PR #630 measured the same
// for gvisor-tap-vsock); they come from a pool, so an idle driver holds none.
const copyBufSize = 256 << 10

var copyBufs = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

// verdict says where a flow from the namespace goes on the host.
type verdict int

const (
	toHost     verdict = iota // dial the destination as it is
	toLoopback                // gateway address: the host's loopback
	toDNS                     // DNS address, port 53: the host's resolvers
	refuse                    // not allowed
)

// route decides the fate of a flow to dst (pure, table-tested).
func (p plan) route(dst netip.AddrPort, disableHostLoopback bool) (netip.AddrPort, verdict) {
	a := dst.Addr().Unmap()
	isGW := a == p.gateway || (p.gateway6.IsValid() && a == p.gateway6)
	switch {
	case (isGW || a == p.dns) && dst.Port() == 53:
		return dst, toDNS
	case isGW && disableHostLoopback:
		return dst, refuse
	case isGW && a.Is4():
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), dst.Port()), toLoopback
	case isGW:
		return netip.AddrPortFrom(netip.IPv6Loopback(), dst.Port()), toLoopback
	case a.IsLoopback() || a.IsUnspecified() || a.IsMulticast():
		// The child's own 127/8 never reaches the tap; anything that does
		// is crafted, and must not reach the host's loopback by a side door.
		return dst, refuse
	case p.addr.Contains(a) || (p.addr6.IsValid() && p.addr6.Contains(a)):
		// Other addresses of the namespace's own subnet do not exist.
		return dst, refuse
	}
	return dst, toHost
}

func addrPort(a tcpip.Address, port uint16) netip.AddrPort {
	ip, _ := netip.AddrFromSlice(a.AsSlice())
	return netip.AddrPortFrom(ip, port)
}

// handleTCP runs on a goroutine gVisor starts per SYN. It connects on the
// host first, so a refused or unreachable destination is a reset in the
// namespace rather than an accepted connection that dies.
func (d *Driver) handleTCP(r *tcp.ForwarderRequest) {
	if !d.track() {
		r.Complete(true)
		return
	}
	defer d.wg.Done()
	id := r.ID()
	dst, v := d.plan.route(addrPort(id.LocalAddress, id.LocalPort), d.cfg.DisableHostLoopback)
	var targets []netip.AddrPort
	switch v {
	case refuse:
		d.log.Debug("tcp refused", "dst", dst)
		r.Complete(true)
		return
	case toDNS:
		targets = d.nameservers()
	default:
		targets = []netip.AddrPort{dst}
	}
	var host net.Conn
	var err error
	for _, t := range targets {
		dl := net.Dialer{Timeout: dialTimeout}
		host, err = dl.DialContext(d.ctx, "tcp", t.String())
		if err == nil {
			break
		}
	}
	if err != nil {
		d.log.Debug("tcp dial failed", "dst", dst, "err", err)
		r.Complete(true)
		return
	}
	var wq waiter.Queue
	ep, terr := r.CreateEndpoint(&wq)
	if terr != nil {
		// The child gave up (a reset, even right after its handshake ACK)
		// before the connection was ours: reset the host side as well.
		r.Complete(true)
		host.(*net.TCPConn).SetLinger(0)
		host.Close()
		return
	}
	r.Complete(false)
	ep.SocketOptions().SetKeepAlive(true)
	guest := gonet.NewTCPConn(&wq, ep)
	if !d.hold(guest, host) {
		return
	}
	defer d.release(guest, host)
	relayTCP(guest, ep, &wq, host.(*net.TCPConn))
}

// relayTCP copies both ways until both directions have ended, passing each
// end-of-stream on as a half-close so protocols that rely on it work. Each
// direction waits for data before borrowing a copy buffer, so an idle
// connection holds none: thousands of idle keep-alive connections cost
// sockets, not megabytes.
func relayTCP(guest *gonet.TCPConn, ep tcpip.Endpoint, wq *waiter.Queue, host *net.TCPConn) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		hostToGuest(host, guest, ep)
	}()
	guestToHost(ep, wq, guest, host)
	<-done
}

func hostToGuest(host *net.TCPConn, guest *gonet.TCPConn, ep tcpip.Endpoint) {
	rc, err := host.SyscallConn()
	if err != nil {
		guest.Close()
		return
	}
	for {
		var bp *[]byte
		var n int
		var rerr error
		err := rc.Read(func(fd uintptr) bool {
			b := copyBufs.Get().(*[]byte)
			n, rerr = syscall.Read(int(fd), *b)
			if rerr == syscall.EAGAIN {
				copyBufs.Put(b)
				return false
			}
			bp = b
			return true
		})
		if err == nil {
			err = rerr
		}
		if err == nil && n > 0 {
			_, werr := guest.Write((*bp)[:n])
			copyBufs.Put(bp)
			if werr != nil {
				// The namespace side is gone; stop reading so the host
				// peer sees it.
				host.CloseRead()
				return
			}
			continue
		}
		if bp != nil {
			copyBufs.Put(bp)
		}
		switch {
		case err == nil:
			guest.CloseWrite() // EOF
		case errors.Is(err, syscall.ECONNRESET):
			ep.Abort() // pass the reset on: the namespace sees RST too
		default:
			guest.Close() // Close from the driver
		}
		return
	}
}

func guestToHost(ep tcpip.Endpoint, wq *waiter.Queue, guest *gonet.TCPConn, host *net.TCPConn) {
	entry, ready := waiter.NewChannelEntry(waiter.ReadableEvents)
	wq.EventRegister(&entry)
	defer wq.EventUnregister(&entry)
	for {
		if ep.Readiness(waiter.ReadableEvents) == 0 {
			<-ready // Close from the driver closes ep, which wakes this
			continue
		}
		bp := copyBufs.Get().(*[]byte)
		w := tcpip.SliceWriter(*bp)
		res, terr := ep.Read(&w, tcpip.ReadOptions{})
		if terr == nil {
			_, werr := host.Write((*bp)[:res.Count])
			copyBufs.Put(bp)
			if werr != nil {
				guest.CloseRead()
				return
			}
			continue
		}
		copyBufs.Put(bp)
		switch terr.(type) {
		case *tcpip.ErrWouldBlock:
			<-ready
			continue
		case *tcpip.ErrClosedForReceive:
			if reset(ep) {
				host.SetLinger(0)
				host.Close()
			} else {
				host.CloseWrite() // EOF
			}
		case *tcpip.ErrConnectionReset:
			host.SetLinger(0) // pass the reset on: close with RST
			host.Close()
		default:
			host.Close() // Close from the driver
		}
		return
	}
}

// reset reports whether the namespace side ended with a reset (or another
// error) rather than a FIN. The endpoint reports the reset itself only to
// the first reader of its error, so the state is what is checked when the
// read said only "closed".
func reset(ep tcpip.Endpoint) bool {
	te, ok := ep.(*tcp.Endpoint)
	return ok && te.EndpointState() == tcp.StateError
}
