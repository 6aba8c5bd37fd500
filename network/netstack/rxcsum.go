package netstack

import (
	"encoding/binary"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// A frame the namespace's kernel marks NEEDS_CSUM carries, at csum_start +
// csum_offset, only the seed of a checksum the receiver is to complete
// (checksum offload). gVisor need not complete it for what it terminates
// (RXChecksumOffload), but a UDP datagram's payload leaves for a host
// socket as it is, and when that payload is itself a packet (VXLAN, as a
// flannel pod network sends it, or Geneve) the partial checksum is the
// inner packet's: left as it is, the far end drops the inner packet as
// corrupt. So UDP frames get their checksum completed here, as the kernel
// does for a device without offload (skb_checksum_help).

// completeChecksum finishes the partial checksum of the n-byte frame in r
// if the frame is UDP over IPv4 or IPv6 and its virtio-net header asks for
// it; other frames are left alone.
func (r *rxBuffer) completeChecksum(n int) {
	if r.hdr[0]&virtioNetHdrFNeedsCsum == 0 || r.hdr[1] != 0 {
		return // no partial checksum, or a TCP super-segment gVisor terminates
	}
	if !r.isUDP(n) {
		return
	}
	start := int(binary.LittleEndian.Uint16(r.hdr[6:8]))
	at := start + int(binary.LittleEndian.Uint16(r.hdr[8:10]))
	if start >= n || at+2 > n {
		return
	}
	var c checksum.Checksumer
	off := 0
	for i, v := range r.views {
		if off >= n {
			break
		}
		b := v.AsSlice()[:min(rxSizes[i], n-off)]
		if lo := start - off; lo < len(b) {
			c.Add(b[max(lo, 0):])
		}
		off += rxSizes[i]
	}
	sum := ^c.Checksum()
	if sum == 0 {
		sum = 0xffff // 0 means "no checksum" in UDP
	}
	r.putByte(at, byte(sum>>8))
	r.putByte(at+1, byte(sum))
}

// isUDP reports whether the n-byte Ethernet frame in r is an IPv4 or IPv6
// packet whose transport is UDP (IPv6 without extension headers).
func (r *rxBuffer) isUDP(n int) bool {
	const eth = header.EthernetMinimumSize
	b := r.views[0].AsSlice() // rxSizes[0] holds every header
	switch binary.BigEndian.Uint16(b[12:14]) {
	case uint16(header.IPv4ProtocolNumber):
		return n >= eth+header.IPv4MinimumSize && b[eth+9] == uint8(header.UDPProtocolNumber)
	case uint16(header.IPv6ProtocolNumber):
		return n >= eth+header.IPv6MinimumSize && b[eth+6] == uint8(header.UDPProtocolNumber)
	}
	return false
}

// putByte writes byte v at offset off of the frame.
func (r *rxBuffer) putByte(off int, v byte) {
	for i, s := range rxSizes {
		if off < s {
			r.views[i].AsSlice()[off] = v
			return
		}
		off -= s
	}
}
