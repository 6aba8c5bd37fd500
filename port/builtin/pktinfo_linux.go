package builtin

import (
	"net"
	"net/netip"

	"golang.org/x/sys/unix"
)

// A UDP listener on a wildcard address must answer from the address the
// client wrote to, or the client's connected socket drops the reply: the
// kernel would pick the source by route, which on a multi-homed host (or
// for a client on a non-loopback local address) is another address. So the
// listener asks for each datagram's destination (IP_PKTINFO) and replies
// from it.

// enablePktinfo turns on destination reporting and says whether the socket
// is AF_INET6.
func enablePktinfo(pc *net.UDPConn) (v6 bool, err error) {
	rc, err := pc.SyscallConn()
	if err != nil {
		return false, err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		var dom int
		if dom, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN); serr != nil {
			return
		}
		v6 = dom == unix.AF_INET6
		if v6 {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1)
		} else {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_PKTINFO, 1)
		}
	})
	if err == nil {
		err = serr
	}
	return v6, err
}

// pktinfoDst returns the destination address carried in oob, if any.
func pktinfoDst(oob []byte) netip.Addr {
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

// pktinfoSrc builds the control message that sends from src.
func pktinfoSrc(v6sock bool, src netip.Addr) []byte {
	if !src.IsValid() {
		return nil
	}
	if v6sock {
		return unix.PktInfo6(&unix.Inet6Pktinfo{Addr: netip.AddrFrom16(src.As16()).As16()})
	}
	if !src.Is4() {
		return nil
	}
	return unix.PktInfo4(&unix.Inet4Pktinfo{Spec_dst: src.As4()})
}
