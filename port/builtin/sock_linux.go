package builtin

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"

	"github.com/unroot/unroot/internal/sys"
)

// dialUDP connects a pooled datagram socket to target, bound to the
// client's address when that is asked for and possible, and wraps it for
// the runtime poller. UDP connects finish at once, so there is nothing to
// wait for.
func (d *Driver) dialUDP(ctx context.Context, p *pool, target, client netip.AddrPort) (*net.UDPConn, error) {
	fd, err := p.getTimeout(ctx, connectTimeout)
	if err != nil {
		return nil, err
	}
	family := p.key.family
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
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("udp flow to %s: %w", target, err)
	}
	return c.(*net.UDPConn), nil
}
