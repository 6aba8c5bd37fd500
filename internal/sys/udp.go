package sys

import (
	"encoding/binary"
	"net/netip"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Batched UDP I/O for the port forwarder: recvmmsg on a listener, UDP GRO
// (a run of equal datagrams from one sender read as one buffer) and
// UDP_SEGMENT (one send that the kernel cuts into equal datagrams).

// Errors a UDP forwarder tells apart.
const (
	EMSGSIZE  = unix.EMSGSIZE
	MSG_TRUNC = unix.MSG_TRUNC
)

// UDPMaxSegments is the most datagrams one UDP_SEGMENT send may carry
// (UDP_MAX_SEGMENTS in the kernel).
const UDPMaxSegments = 64

// SetUDPListener prepares a published UDP port's listening socket as
// SetUDPForwarding does, but forces its buffers past
// net.core.[rw]mem_max where the kernel allows it (CAP_NET_ADMIN in the
// initial user namespace: a privileged launcher). That one socket holds
// every client's datagrams while the relay waits for a CPU. Otherwise the
// kernel caps them there (SocketBuffers tells what was granted). Every
// option is tried; the first error is returned.
func SetUDPListener(fd int, bufBytes int) error {
	return setUDPForwarding(fd, bufBytes, true)
}

// SetUDPForwarding prepares a forwarding UDP socket (a flow's socket to
// the child): buffers of bufBytes each way, capped by the kernel at
// net.core.[rw]mem_max (never forced: a port may have thousands of flows,
// and the admin's caps stand for them), and no DF bit: a datagram larger
// than the path MTU (VXLAN's 1550 bytes on a 1500-byte network) is
// fragmented, as the sender expects of a hop, not refused with EMSGSIZE.
// Every option is tried; the first error is returned.
func SetUDPForwarding(fd int, bufBytes int) error {
	return setUDPForwarding(fd, bufBytes, false)
}

func setUDPForwarding(fd int, bufBytes int, force bool) error {
	var first error
	keep := func(err error) {
		if first == nil {
			first = err
		}
	}
	keep(setBuf(fd, force, unix.SO_RCVBUFFORCE, unix.SO_RCVBUF, bufBytes))
	keep(setBuf(fd, force, unix.SO_SNDBUFFORCE, unix.SO_SNDBUF, bufBytes))
	dom, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	if err != nil {
		keep(err)
		return first
	}
	if dom == unix.AF_INET6 {
		keep(unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MTU_DISCOVER, unix.IPV6_PMTUDISC_DONT))
		// An AF_INET6 socket carries IPv4 too (mapped addresses).
		unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DONT)
		return first
	}
	keep(unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DONT))
	return first
}

// forceRefused is set once the kernel refused a *BUFFORCE option (no
// CAP_NET_ADMIN in the initial user namespace, the unprivileged case), so
// later listeners skip the failing system call.
var forceRefused atomic.Bool

// setBuf sets a socket buffer, with the force option when force is set and
// the kernel permits it, else plainly.
func setBuf(fd int, force bool, forceOpt, plainOpt, bytes int) error {
	if force && !forceRefused.Load() {
		err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, forceOpt, bytes)
		if err == nil {
			return nil
		}
		if err != unix.EPERM {
			return err
		}
		forceRefused.Store(true)
	}
	return unix.SetsockoptInt(fd, unix.SOL_SOCKET, plainOpt, bytes)
}

// SocketBuffers returns the receive and send buffer sizes the kernel
// granted fd, as getsockopt reports them (twice what was set, for the
// kernel's bookkeeping).
func SocketBuffers(fd int) (rcv, snd int, err error) {
	if rcv, err = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF); err != nil {
		return 0, 0, err
	}
	snd, err = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF)
	return rcv, snd, err
}

// EnableUDPGRO asks the kernel to hand fd runs of equal datagrams from one
// sender as one buffer, with their size in a UDP_GRO control message (see
// ParseUDPControl). It reports whether the kernel has it.
func EnableUDPGRO(fd int) bool {
	return unix.SetsockoptInt(fd, unix.IPPROTO_UDP, unix.UDP_GRO, 1) == nil
}

// UDPBatch is the state of one recvmmsg: n slots, each a buffer, a name
// and a control buffer, made once and reused for every call.
type UDPBatch struct {
	hdrs  []unix.Mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrAny
	bufs  [][]byte
	oobs  [][]byte
}

// NewUDPBatch makes a batch of n slots of bufSize bytes each. Pages of the
// buffers are touched only as datagrams fill them.
func NewUDPBatch(n, bufSize int) *UDPBatch {
	b := &UDPBatch{
		hdrs:  make([]unix.Mmsghdr, n),
		iovs:  make([]unix.Iovec, n),
		names: make([]unix.RawSockaddrAny, n),
		bufs:  make([][]byte, n),
		oobs:  make([][]byte, n),
	}
	mem := make([]byte, n*bufSize)
	oob := make([]byte, n*128)
	for i := range n {
		b.bufs[i] = mem[i*bufSize : (i+1)*bufSize : (i+1)*bufSize]
		b.oobs[i] = oob[i*128 : (i+1)*128 : (i+1)*128]
	}
	return b
}

// Len is the number of slots.
func (b *UDPBatch) Len() int { return len(b.hdrs) }

// Recv reads up to Len datagrams from fd without waiting (EAGAIN if none
// is queued) and returns how many slots it filled.
func (b *UDPBatch) Recv(fd int) (int, error) {
	for i := range b.hdrs {
		b.iovs[i].Base = &b.bufs[i][0]
		b.iovs[i].SetLen(len(b.bufs[i]))
		h := &b.hdrs[i].Hdr
		h.Name = (*byte)(unsafe.Pointer(&b.names[i]))
		h.Namelen = unix.SizeofSockaddrAny
		h.Iov = &b.iovs[i]
		h.Iovlen = 1
		h.Control = &b.oobs[i][0]
		h.SetControllen(len(b.oobs[i]))
		h.Flags = 0
		b.hdrs[i].Len = 0
	}
	for {
		r, _, e := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&b.hdrs[0])), uintptr(len(b.hdrs)), unix.MSG_DONTWAIT, 0, 0)
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return 0, e
		}
		return int(r), nil
	}
}

// Datagram returns slot i after Recv: its payload, its sender, its
// control messages and its flags (MSG_TRUNC: the payload was cut).
func (b *UDPBatch) Datagram(i int) (payload []byte, from netip.AddrPort, oob []byte, flags int) {
	h := &b.hdrs[i]
	from = rawAddrPort(&b.names[i])
	from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
	return b.bufs[i][:h.Len], from, b.oobs[i][:h.Hdr.Controllen], int(h.Hdr.Flags)
}

// ParseUDPControl reads, without allocating, the destination address
// (IP_PKTINFO or IPV6_PKTINFO; IPv4-mapped comes back as IPv4) and the GRO
// segment size (0: one datagram) from a datagram's control messages.
func ParseUDPControl(oob []byte) (dst netip.Addr, gso int) {
	const hdr = unix.SizeofCmsghdr
	for len(oob) >= hdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		l, level, typ := int(h.Len), h.Level, h.Type
		if l < hdr || l > len(oob) {
			return dst, gso
		}
		data := oob[hdr:l]
		switch {
		case level == unix.IPPROTO_IP && typ == unix.IP_PKTINFO && len(data) >= unix.SizeofInet4Pktinfo:
			dst = netip.AddrFrom4([4]byte(data[8:12]))
		case level == unix.IPPROTO_IPV6 && typ == unix.IPV6_PKTINFO && len(data) >= unix.SizeofInet6Pktinfo:
			dst = netip.AddrFrom16([16]byte(data[0:16])).Unmap()
		case level == unix.IPPROTO_UDP && typ == unix.UDP_GRO && len(data) >= 2:
			// The kernel writes an int; only its low 16 bits can be set.
			if len(data) >= 4 {
				gso = int(binary.NativeEndian.Uint32(data[0:4]))
			} else {
				gso = int(binary.NativeEndian.Uint16(data[0:2]))
			}
		}
		next := (l + unix.SizeofPtr - 1) &^ (unix.SizeofPtr - 1)
		if next >= len(oob) {
			break
		}
		oob = oob[next:]
	}
	return dst, gso
}

// UDPSegmentControl is the control message of a send that the kernel cuts
// into datagrams of size bytes (UDP_SEGMENT), written into b, which must
// hold unix.CmsgSpace(2) bytes; it returns b's used part.
func UDPSegmentControl(b []byte, size int) []byte {
	n := unix.CmsgSpace(2)
	b = b[:n]
	clear(b)
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level = unix.IPPROTO_UDP
	h.Type = unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	binary.NativeEndian.PutUint16(b[unix.CmsgLen(0):], uint16(size))
	return b
}

// SendIovecs sends the buffers iovs as one datagram (or, with a
// UDP_SEGMENT control message in oob, as datagrams cut by the kernel) on
// the connected socket fd, without waiting.
func SendIovecs(fd int, iovs []unix.Iovec, oob []byte) error {
	var h unix.Msghdr
	h.Iov = &iovs[0]
	h.SetIovlen(len(iovs))
	if len(oob) > 0 {
		h.Control = &oob[0]
		h.SetControllen(len(oob))
	}
	for {
		_, _, e := unix.Syscall(unix.SYS_SENDMSG, uintptr(fd), uintptr(unsafe.Pointer(&h)), unix.MSG_DONTWAIT)
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return e
		}
		return nil
	}
}

// Iovec is one buffer of a scatter-gather send.
type Iovec = unix.Iovec

// SetIovec points v at b.
func SetIovec(v *Iovec, b []byte) {
	v.Base = nil
	if len(b) > 0 {
		v.Base = &b[0]
	}
	v.SetLen(len(b))
}
