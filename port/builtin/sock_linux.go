package builtin

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"

	"github.com/unroot/unroot/internal/sys"
)

// dialUDP connects fd, a pooled datagram socket of family, to target,
// bound to the client's address when that is asked for and possible, and
// wraps it for the runtime poller. UDP connects finish at once, so there is
// nothing to wait for. fd is the connection's or closed. Wrapping fd takes
// a second descriptor for a moment; when there is none, free is asked to
// close one (a flow) and the wrap is tried again.
func (d *Driver) dialUDP(ctx context.Context, fd, family int, target, client netip.AddrPort, free func() bool) (*net.UDPConn, error) {
	if err := sys.SetUDPForwarding(fd, udpSockBuf); err != nil {
		d.log.Debug("udp flow socket options failed; large datagrams may be refused", "err", err)
	}
	if src, ok := d.transparentSource(client, target, true); ok && d.transparent(ctx, target) {
		if err := sys.BindTransparent(fd, family, src); err != nil {
			d.log.Debug("keeping the client address failed; connecting plainly", "client", client, "err", err)
		}
	}
	if err := sys.Connect(fd, family, target); err != nil {
		sys.Close(fd)
		return nil, fmt.Errorf("connect %s in the child: %w", target, err)
	}
	f := os.NewFile(uintptr(fd), "udp-flow")
	c, err := net.FileConn(f)
	if errors.Is(err, syscall.EMFILE) && free() {
		c, err = net.FileConn(f)
	}
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("udp flow to %s: %w", target, err)
	}
	return c.(*net.UDPConn), nil
}
