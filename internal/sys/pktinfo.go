package sys

import (
	"net/netip"

	"golang.org/x/sys/unix"
)

// EnablePktinfo asks the UDP socket fd to report each datagram's
// destination address (IP_PKTINFO, or IPV6_RECVPKTINFO on an AF_INET6
// socket) and says whether the socket is AF_INET6.
func EnablePktinfo(fd int) (v6 bool, err error) {
	dom, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	if err != nil {
		return false, err
	}
	v6 = dom == unix.AF_INET6
	if v6 {
		return v6, unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1)
	}
	return v6, unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_PKTINFO, 1)
}

// PktinfoDst returns the destination address carried in the control
// messages oob (from a socket with EnablePktinfo), or the zero Addr if
// there is none. IPv4-mapped addresses come back as IPv4.
func PktinfoDst(oob []byte) netip.Addr {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return netip.Addr{}
	}
	for _, m := range msgs {
		switch {
		case m.Header.Level == unix.IPPROTO_IP && m.Header.Type == unix.IP_PKTINFO && len(m.Data) >= unix.SizeofInet4Pktinfo:
			// struct in_pktinfo { int ifindex; in_addr spec_dst; in_addr addr; }
			return netip.AddrFrom4([4]byte(m.Data[8:12]))
		case m.Header.Level == unix.IPPROTO_IPV6 && m.Header.Type == unix.IPV6_PKTINFO && len(m.Data) >= unix.SizeofInet6Pktinfo:
			// struct in6_pktinfo { in6_addr addr; unsigned ifindex; }
			return netip.AddrFrom16([16]byte(m.Data[0:16])).Unmap()
		}
	}
	return netip.Addr{}
}

// PktinfoSrc builds the control message that makes a datagram sent on a
// UDP socket (AF_INET6 if v6sock) leave from src. It returns nil, which
// sends from the address the kernel picks, when src is invalid or is IPv6
// on an AF_INET socket.
func PktinfoSrc(v6sock bool, src netip.Addr) []byte {
	if !src.IsValid() {
		return nil
	}
	if v6sock {
		return unix.PktInfo6(&unix.Inet6Pktinfo{Addr: src.As16()})
	}
	if !src.Is4() {
		return nil
	}
	return unix.PktInfo4(&unix.Inet4Pktinfo{Spec_dst: src.As4()})
}
