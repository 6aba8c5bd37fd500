package builtin

import (
	"net"

	"github.com/unroot/unroot/internal/sys"
)

// A UDP listener on a wildcard address must answer from the address the
// client wrote to, or the client's connected socket drops the reply: the
// kernel would pick the source by route, which on a multi-homed host (or
// for a client on a non-loopback local address) is another address. So the
// listener asks for each datagram's destination (IP_PKTINFO, read with
// sys.PktinfoDst) and replies from it (sys.PktinfoSrc).

// enablePktinfo turns on destination reporting and says whether the socket
// is AF_INET6.
func enablePktinfo(pc *net.UDPConn) (v6 bool, err error) {
	rc, err := pc.SyscallConn()
	if err != nil {
		return false, err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		v6, serr = sys.EnablePktinfo(int(fd))
	})
	if err == nil {
		err = serr
	}
	return v6, err
}
