// Package netconf configures links, addresses and routes over rtnetlink in
// the calling thread's network namespace. It replaces the `ip link`,
// `ip addr` and `ip route` processes RootlessKit runs, which cost several
// milliseconds each and a runtime dependency on iproute2.
package netconf

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/unroot/unroot/network"
	"github.com/vishvananda/netlink"
)

// LoopbackUp brings lo up (the kernel adds 127.0.0.1/8 and ::1 itself).
func LoopbackUp() error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("find lo: %w", err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return fmt.Errorf("set lo up: %w", err)
	}
	return nil
}

// LinkIndex returns the interface index of the device name; a device
// removed and made again under the same name gets a new one.
func LinkIndex(name string) (int, error) {
	link, err := netlink.LinkByName(name)
	if err != nil {
		return 0, fmt.Errorf("find %s: %w", name, err)
	}
	return link.Attrs().Index, nil
}

// Configure sets the driver's device up with its MTU, address and default
// route, as the Setup describes. A Setup without IfName or with
// ConfiguredByDriver leaves the devices alone.
func Configure(s network.Setup) error {
	if s.IfName == "" || s.ConfiguredByDriver {
		return nil
	}
	link, err := netlink.LinkByName(s.IfName)
	if err != nil {
		return fmt.Errorf("find %s: %w (the network driver did not create it)", s.IfName, err)
	}
	if s.MTU > 0 {
		if err := netlink.LinkSetMTU(link, s.MTU); err != nil {
			return fmt.Errorf("set %s mtu %d: %w", s.IfName, s.MTU, err)
		}
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("set %s up: %w", s.IfName, err)
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
		if err := netlink.AddrReplace(link, addr); err != nil {
			return fmt.Errorf("add address %s to %s: %w", a, s.IfName, err)
		}
	}
	for _, gw := range []netip.Addr{s.Gateway, s.Gateway6} {
		if !gw.IsValid() {
			continue
		}
		r := &netlink.Route{LinkIndex: link.Attrs().Index, Gw: gw.AsSlice()}
		if gw.Is6() {
			r.Family = netlink.FAMILY_V6
		}
		if err := netlink.RouteReplace(r); err != nil {
			return fmt.Errorf("add default route via %s dev %s: %w", gw, s.IfName, err)
		}
	}
	return nil
}
