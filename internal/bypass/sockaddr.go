package bypass

import (
	"encoding/binary"
	"net/netip"
)

const (
	afInet  = 2
	afInet6 = 10
)

// decodeSockaddr reads a struct sockaddr_in or sockaddr_in6 as the target
// passed it. ok is false for any other family or a short buffer; such calls
// are left to the kernel.
func decodeSockaddr(b []byte) (family int, ap netip.AddrPort, ok bool) {
	if len(b) < 2 {
		return 0, netip.AddrPort{}, false
	}
	family = int(binary.LittleEndian.Uint16(b))
	switch family {
	case afInet:
		if len(b) < 16 {
			return 0, netip.AddrPort{}, false
		}
		a := netip.AddrFrom4([4]byte(b[4:8]))
		return family, netip.AddrPortFrom(a, binary.BigEndian.Uint16(b[2:])), true
	case afInet6:
		if len(b) < 24 { // sin6_scope_id came later; 24 is the RFC 2133 size
			return 0, netip.AddrPort{}, false
		}
		a := netip.AddrFrom16([16]byte(b[8:24]))
		if len(b) >= 28 {
			if scope := binary.LittleEndian.Uint32(b[24:]); scope != 0 && a.IsLinkLocalUnicast() {
				// Link-local with a scope names an interface inside; never bypassed.
				a = a.WithZone("scoped")
			}
		}
		return family, netip.AddrPortFrom(a, binary.BigEndian.Uint16(b[2:])), true
	}
	return family, netip.AddrPort{}, false
}

// msghdrSize is the size of struct msghdr on the 64-bit architectures the
// filter traps (amd64, arm64).
const msghdrSize = 56

// msghdr is what the supervisor reads of a struct msghdr.
type msghdr struct {
	name       uint64
	namelen    uint32
	iov        uint64
	iovlen     uint64
	controllen uint64
}

func decodeMsghdr(b []byte) msghdr {
	le := binary.LittleEndian
	return msghdr{
		name:       le.Uint64(b[0:]),
		namelen:    le.Uint32(b[8:]),
		iov:        le.Uint64(b[16:]),
		iovlen:     le.Uint64(b[24:]),
		controllen: le.Uint64(b[40:]),
	}
}
