// Package netconf configures links, addresses and routes over rtnetlink in
// the calling thread's network namespace. It replaces the `ip link`,
// `ip addr` and `ip route` processes RootlessKit runs, which cost an exec
// each and a runtime dependency on iproute2.
package netconf

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"

	"github.com/unroot/unroot/internal/sys"
	"github.com/unroot/unroot/network"
	"github.com/vishvananda/netlink"
)

// Up brings lo up (the kernel adds 127.0.0.1/8 and ::1 itself), then sets
// the driver's device's MTU, brings it up and adds its addresses and
// default routes, idempotently, and returns the device's index (0 when s
// names none or the driver configured it itself). It uses one netlink
// socket: each of vishvananda's package-level calls opens one of its own,
// on the init's critical path.
func Up(s network.Setup) (int, error) {
	h, err := newHandle()
	if err != nil {
		return 0, err
	}
	defer h.Close()
	if err := loopbackUp(h); err != nil {
		return 0, err
	}
	localCongestionControl()
	return configure(h, s)
}

// localCongestionControl makes the namespace's default TCP congestion
// control the one for hops that stay on this machine, if the host's is not
// (see sys.LocalCongestionControl). Inside these namespaces TCP never
// crosses a real link: every connection ends at loopback, at a bridge
// inside, or at the user-mode network (slirp4netns, pasta, the netstack),
// which ends it and opens its own on the host with the host's algorithm.
// Best effort; a user who wants BBR inside sets the sysctl there.
func localCongestionControl() {
	if cc := sys.LocalCongestionControl(); cc != "" {
		os.WriteFile(sys.CongestionControlSysctl, []byte(cc), 0)
	}
}

func newHandle() (*netlink.Handle, error) {
	h, err := netlink.NewHandle(syscall.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("open a netlink socket: %w", err)
	}
	return h, nil
}

// loopbackIndex is lo's: the kernel gives it index 1 in every network
// namespace (LOOPBACK_IFINDEX), so no lookup is needed.
const loopbackIndex = 1

func loopbackUp(h *netlink.Handle) error {
	if err := h.LinkSetUp(byIndex(loopbackIndex, "lo")); err != nil {
		return fmt.Errorf("set lo up: %w", err)
	}
	return nil
}

// byIndex names a device for the netlink calls that need only its index.
func byIndex(index int, name string) netlink.Link {
	return &netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: index, Name: name}}
}

func configure(h *netlink.Handle, s network.Setup) (int, error) {
	if s.IfName == "" || s.ConfiguredByDriver {
		return 0, nil
	}
	index, err := sys.IfIndex(s.IfName)
	if err != nil {
		return 0, fmt.Errorf("%w (the network driver did not create it)", err)
	}
	link := byIndex(index, s.IfName)
	if s.MTU > 0 {
		if err := h.LinkSetMTU(link, s.MTU); err != nil {
			return 0, fmt.Errorf("set %s mtu %d: %w", s.IfName, s.MTU, err)
		}
	}
	if err := h.LinkSetUp(link); err != nil {
		return 0, fmt.Errorf("set %s up: %w", s.IfName, err)
	}
	for _, a := range []netip.Prefix{s.Addr, s.Addr6} {
		if !a.IsValid() {
			continue
		}
		addr := &netlink.Addr{IPNet: &net.IPNet{IP: a.Addr().AsSlice(), Mask: net.CIDRMask(a.Bits(), a.Addr().BitLen())}}
		if a.Addr().Is6() {
			// Skip duplicate address detection: the device is ours alone and
			// DAD would hold the address unusable for about a second.
			addr.Flags = 0x02 // IFA_F_NODAD (0x80 is IFA_F_PERMANENT)
		}
		if err := h.AddrReplace(link, addr); err != nil {
			return 0, fmt.Errorf("add address %s to %s: %w", a, s.IfName, err)
		}
	}
	for _, gw := range []netip.Addr{s.Gateway, s.Gateway6} {
		if !gw.IsValid() {
			continue
		}
		r := &netlink.Route{LinkIndex: index, Gw: gw.AsSlice()}
		if gw.Is6() {
			r.Family = netlink.FAMILY_V6
		}
		if err := h.RouteReplace(r); err != nil {
			return 0, fmt.Errorf("add default route via %s dev %s: %w", gw, s.IfName, err)
		}
	}
	return index, nil
}
