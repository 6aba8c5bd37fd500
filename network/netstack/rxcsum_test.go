package netstack

import (
	"encoding/binary"
	"testing"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// udpFrame builds an Ethernet frame with an IPv4 UDP datagram of size
// payload bytes whose checksum is left as a kernel with checksum offload
// leaves it: the pseudo-header sum, to be completed by the receiver.
func udpFrame(size int) (frame []byte, start, offset int) {
	const eth, ip = header.EthernetMinimumSize, header.IPv4MinimumSize
	frame = make([]byte, eth+ip+header.UDPMinimumSize+size)
	binary.BigEndian.PutUint16(frame[12:], uint16(header.IPv4ProtocolNumber))
	src, dst := tcpip.AddrFrom4([4]byte{10, 0, 2, 100}), tcpip.AddrFrom4([4]byte{198, 18, 0, 3})
	header.IPv4(frame[eth:]).Encode(&header.IPv4Fields{TotalLength: uint16(len(frame) - eth), TTL: 64,
		Protocol: uint8(header.UDPProtocolNumber), SrcAddr: src, DstAddr: dst})
	u := header.UDP(frame[eth+ip:])
	u.Encode(&header.UDPFields{SrcPort: 40000, DstPort: 8472, Length: uint16(header.UDPMinimumSize + size)})
	for i := range size {
		u.Payload()[i] = byte(i*7 + 3)
	}
	u.SetChecksum(header.PseudoHeaderChecksum(header.UDPProtocolNumber, src, dst, uint16(len(u))))
	return frame, eth + ip, 6
}

// load puts frame into r's views as a read would, with a virtio-net header
// asking for the checksum at start+offset.
func load(r *rxBuffer, frame []byte, start, offset int) {
	r.fill()
	rest := frame
	for i := range r.views {
		k := copy(r.views[i].AsSlice(), rest)
		rest = rest[k:]
	}
	clear(r.hdr[:])
	r.hdr[0] = virtioNetHdrFNeedsCsum
	binary.LittleEndian.PutUint16(r.hdr[6:], uint16(start))
	binary.LittleEndian.PutUint16(r.hdr[8:], uint16(offset))
}

func TestCompleteChecksum(t *testing.T) {
	// Payloads within the first view, across views, and an odd length.
	for _, size := range []int{0, 1, 1400, 1501, 5000, 60000} {
		frame, start, offset := udpFrame(size)
		var r rxBuffer
		load(&r, frame, start, offset)
		r.completeChecksum(len(frame))
		got := flat(r.take(len(frame)))
		u := header.UDP(got[start:])
		ip := header.IPv4(got[header.EthernetMinimumSize:])
		if !u.IsChecksumValid(ip.SourceAddress(), ip.DestinationAddress(), checksum.Checksum(u.Payload(), 0)) {
			t.Errorf("%d-byte payload: checksum %#04x not valid after completion", size, u.Checksum())
		}
	}
}

// Frames without NEEDS_CSUM, and TCP ones, are left as they are.
func TestCompleteChecksumLeavesOthers(t *testing.T) {
	frame, start, offset := udpFrame(100)
	var r rxBuffer
	load(&r, frame, start, offset)
	r.hdr[0] = 0
	r.completeChecksum(len(frame))
	if got := flat(r.take(len(frame))); string(got) != string(frame) {
		t.Error("a frame without NEEDS_CSUM was changed")
	}
	frame[header.EthernetMinimumSize+9] = uint8(header.TCPProtocolNumber)
	load(&r, frame, start, offset)
	r.completeChecksum(len(frame))
	if got := flat(r.take(len(frame))); string(got) != string(frame) {
		t.Error("a TCP frame was changed")
	}
}

func flat(b buffer.Buffer) []byte {
	defer b.Release()
	return b.Flatten()
}
