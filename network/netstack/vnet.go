package netstack

import (
	"encoding/binary"
	"fmt"
	"sync"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/rawfile"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/stopfd"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// vnetEndpoint drives a tap opened with IFF_VNET_HDR. gVisor's fdbased
// endpoint only speaks the virtio-net header on sockets, so a tap needs this
// small endpoint of its own. What the header buys:
//   - receive: with TUNSETOFFLOAD(CSUM|TSO4|TSO6) the namespace's kernel
//     hands over TCP super-segments of up to 64 KiB even at MTU 1500, so the
//     per-frame cost that dominates a user-mode stack is paid once per 64 KiB;
//   - send: gVisor's TCP builds 64 KiB segments (host GSO) and the kernel
//     splits them and completes their checksums.
type vnetEndpoint struct {
	fd   int
	stop stopfd.StopFD
	mtu  uint32
	addr tcpip.LinkAddress

	mu         sync.RWMutex
	dispatcher stack.NetworkDispatcher
	wg         sync.WaitGroup
}

const (
	virtioNetHdrSize = 10
	// vnetGSOMaxSize is the largest segment gVisor hands us; the IPv4 total
	// length field caps it anyway.
	vnetGSOMaxSize = 1 << 16
	// Offload bits of TUNSETOFFLOAD (linux/if_tun.h).
	tunFCSUM = 0x01
	tunFTSO4 = 0x02
	tunFTSO6 = 0x04
	// virtio_net_hdr fields (linux/virtio_net.h).
	virtioNetHdrFNeedsCsum = 1
	virtioNetHdrGSOTCPv4   = 1
	virtioNetHdrGSOTCPv6   = 4
)

var (
	_ stack.LinkEndpoint = (*vnetEndpoint)(nil)
	_ stack.GSOEndpoint  = (*vnetEndpoint)(nil)
)

// newVnetEndpoint takes a tap fd opened with IFF_VNET_HDR. It does not own
// fd: the caller closes it after the stack has been destroyed.
func newVnetEndpoint(fd int, mtu uint32, addr tcpip.LinkAddress) (*vnetEndpoint, error) {
	if err := tapSetOffload(fd, tunFCSUM|tunFTSO4|tunFTSO6); err != nil {
		return nil, fmt.Errorf("enable tap offloads (TUNSETOFFLOAD): %w", err)
	}
	if err := setNonblock(fd); err != nil {
		return nil, fmt.Errorf("make tap non-blocking: %w", err)
	}
	sf, err := stopfd.New()
	if err != nil {
		return nil, fmt.Errorf("create stop eventfd: %w", err)
	}
	return &vnetEndpoint{fd: fd, stop: sf, mtu: mtu, addr: addr}, nil
}

func (e *vnetEndpoint) MTU() uint32                             { return e.mtu }
func (e *vnetEndpoint) SetMTU(mtu uint32)                       { e.mtu = mtu }
func (e *vnetEndpoint) MaxHeaderLength() uint16                 { return header.EthernetMinimumSize }
func (e *vnetEndpoint) LinkAddress() tcpip.LinkAddress          { return e.addr }
func (e *vnetEndpoint) SetLinkAddress(a tcpip.LinkAddress)      { e.addr = a }
func (e *vnetEndpoint) ARPHardwareType() header.ARPHardwareType { return header.ARPHardwareEther }
func (e *vnetEndpoint) GSOMaxSize() uint32                      { return vnetGSOMaxSize }
func (e *vnetEndpoint) SupportedGSO() stack.SupportedGSO        { return stack.HostGSOSupported }
func (e *vnetEndpoint) SetOnCloseAction(func())                 {}
func (e *vnetEndpoint) Wait()                                   { e.wg.Wait() }

// Capabilities: the kernel either computed checksums or will complete them
// (NEEDS_CSUM) before anyone else sees the bytes, so verifying on receive is
// wasted work.
func (e *vnetEndpoint) Capabilities() stack.LinkEndpointCapabilities {
	return stack.CapabilityResolutionRequired | stack.CapabilityRXChecksumOffload
}

func (e *vnetEndpoint) IsAttached() bool {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.dispatcher != nil
}

// Attach starts the reader; Attach(nil), called when the NIC is removed,
// stops it and waits for it.
func (e *vnetEndpoint) Attach(d stack.NetworkDispatcher) {
	e.mu.Lock()
	if d == nil {
		was := e.dispatcher != nil
		e.dispatcher = nil
		e.mu.Unlock()
		if was {
			e.stop.Stop()
			e.wg.Wait()
		}
		return
	}
	defer e.mu.Unlock()
	if e.dispatcher != nil {
		return
	}
	e.dispatcher = d
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		e.readLoop(d)
	}()
}

// Close releases the stop eventfd; the tap fd belongs to the driver.
func (e *vnetEndpoint) Close() {
	if e.stop.EFD >= 0 {
		closeFD(e.stop.EFD)
		e.stop.EFD = -1
	}
}

// rxSizes are the chunks one read lands in: a small frame (an ACK, a DNS
// query, a 1500-byte segment) fills only the first, a 64 KiB super-segment
// all of them. They are powers of two so each is exactly one pooled gVisor
// chunk, and they add up to more than Ethernet plus a 64 KiB IP packet.
var rxSizes = [...]int{2048, 2048, 4096, 8192, 16384, 32768, 128}

// rxBuffer reads frames straight into gVisor views, so a received packet is
// handed to the stack without a copy; only the views a frame used are
// replaced for the next read.
type rxBuffer struct {
	hdr   [virtioNetHdrSize]byte
	views [len(rxSizes)]*buffer.View
}

// fill gives every slot a view; the caller builds the iovecs from them.
func (r *rxBuffer) fill() {
	for i, v := range r.views {
		if v == nil {
			r.views[i] = buffer.NewViewSize(rxSizes[i])
		}
	}
}

// take returns the first n bytes read as a Buffer that owns its views.
func (r *rxBuffer) take(n int) buffer.Buffer {
	var b buffer.Buffer
	for i := 0; n > 0; i++ {
		v := r.views[i]
		r.views[i] = nil
		k := min(n, rxSizes[i])
		v.CapLength(k)
		if i == 0 {
			b = buffer.MakeWithView(v)
		} else {
			b.Append(v)
		}
		n -= k
	}
	return b
}

func (r *rxBuffer) release() {
	for i, v := range r.views {
		if v != nil {
			v.Release()
			r.views[i] = nil
		}
	}
}

func (e *vnetEndpoint) readLoop(d stack.NetworkDispatcher) {
	var rx rxBuffer
	defer rx.release()
	const maxIov = len(rxSizes) + 1
	iov := rawfile.AppendIovecFromBytes(nil, nil, 0) // reused between reads
	for {
		rx.fill()
		iov = rawfile.AppendIovecFromBytes(iov[:0], rx.hdr[:], maxIov)
		for _, v := range rx.views {
			iov = rawfile.AppendIovecFromBytes(iov, v.AsSlice(), maxIov)
		}
		n, errno := rawfile.BlockingReadvUntilStopped(e.stop.EFD, e.fd, iov)
		if n == -1 && errno == 0 {
			return // stopped
		}
		if errno != 0 {
			return // the tap is gone (namespace ended)
		}
		if n <= virtioNetHdrSize+header.EthernetMinimumSize {
			continue
		}
		e.deliver(d, &rx, n-virtioNetHdrSize)
	}
}

func (e *vnetEndpoint) deliver(d stack.NetworkDispatcher, rx *rxBuffer, n int) {
	eth := header.Ethernet(rx.views[0].AsSlice()[:header.EthernetMinimumSize])
	dst := eth.DestinationAddress()
	if dst != e.addr && dst[0]&1 == 0 {
		return // unicast for someone else; the views are reused
	}
	proto := eth.Type()
	rx.completeChecksum(n)
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: rx.take(n)})
	defer pkt.DecRef()
	if _, ok := pkt.LinkHeader().Consume(header.EthernetMinimumSize); !ok {
		return
	}
	pkt.NetworkProtocolNumber = proto
	d.DeliverNetworkPacket(proto, pkt)
}

func (e *vnetEndpoint) AddHeader(pkt *stack.PacketBuffer) {
	eth := header.Ethernet(pkt.LinkHeader().Push(header.EthernetMinimumSize))
	eth.Encode(&header.EthernetFields{
		SrcAddr: pkt.EgressRoute.LocalLinkAddress,
		DstAddr: pkt.EgressRoute.RemoteLinkAddress,
		Type:    pkt.NetworkProtocolNumber,
	})
}

func (e *vnetEndpoint) ParseHeader(pkt *stack.PacketBuffer) bool {
	h, ok := pkt.LinkHeader().Consume(header.EthernetMinimumSize)
	if ok {
		pkt.NetworkProtocolNumber = header.Ethernet(h).Type()
	}
	return ok
}

// WritePackets writes each packet with its virtio-net header. A full tap
// queue drops the packet, as a real link would; TCP recovers.
func (e *vnetEndpoint) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	n := 0
	for _, pkt := range pkts.AsSlice() {
		if err := e.writePacket(pkt); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

func (e *vnetEndpoint) writePacket(pkt *stack.PacketBuffer) tcpip.Error {
	var hdr [virtioNetHdrSize]byte
	vnetHeader(hdr[:], pkt)
	views := pkt.AsSlices()
	iov := rawfile.AppendIovecFromBytes(nil, hdr[:], len(views)+1)
	for _, v := range views {
		iov = rawfile.AppendIovecFromBytes(iov, v, len(views)+1)
	}
	if errno := rawfile.NonBlockingWriteIovec(e.fd, iov); errno != 0 {
		return tcpip.TranslateErrno(errno)
	}
	return nil
}

// vnetHeader fills the little-endian virtio_net_hdr for pkt: the checksum
// the kernel must complete and, for a segment above the MSS, how to split it.
func vnetHeader(h []byte, pkt *stack.PacketBuffer) {
	clear(h)
	g := pkt.GSOOptions
	if g.Type == stack.GSONone {
		return
	}
	binary.LittleEndian.PutUint16(h[2:], uint16(pkt.HeaderSize()))
	if g.NeedsCsum {
		h[0] = virtioNetHdrFNeedsCsum
		binary.LittleEndian.PutUint16(h[6:], header.EthernetMinimumSize+g.L3HdrLen)
		binary.LittleEndian.PutUint16(h[8:], g.CsumOffset)
	}
	if pkt.Data().Size() > int(g.MSS) {
		switch g.Type {
		case stack.GSOTCPv4:
			h[1] = virtioNetHdrGSOTCPv4
		case stack.GSOTCPv6:
			h[1] = virtioNetHdrGSOTCPv6
		}
		binary.LittleEndian.PutUint16(h[4:], g.MSS)
	}
}
