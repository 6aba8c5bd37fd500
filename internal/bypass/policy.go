package bypass

import (
	"net/netip"
	"slices"
)

// Published is a published port as the bypass matches binds against it.
type Published struct {
	ID         int
	Transport  string     // "tcp" or "udp"
	ParentIP   netip.Addr // invalid: every address (the spec left it empty)
	ParentPort uint16
	ChildIP    netip.Addr // invalid: none given
	ChildPort  uint16
}

// matchBind returns the published ports that a bind of addr (transport
// "tcp" or "udp") inside the namespace serves: same child port, and an
// address that the relay would have reached (wildcard, loopback, the
// spec's child IP or an address of the namespace's own device).
func matchBind(pubs []Published, transport string, addr netip.AddrPort, self []netip.Addr) []Published {
	a := addr.Addr().Unmap()
	if addr.Port() == 0 {
		return nil
	}
	ok := a.IsUnspecified() || a.IsLoopback() || slices.Contains(self, a)
	var out []Published
	for _, p := range pubs {
		if p.Transport != transport || p.ChildPort != addr.Port() {
			continue
		}
		if ok || (p.ChildIP.IsValid() && p.ChildIP.Unmap() == a) {
			out = append(out, p)
		}
	}
	return out
}

// hostBindAddr is where a socket of family (and, for AF_INET6, IPV6_V6ONLY
// as set) binds on the host to serve p. ok is false when the program's
// socket cannot serve the published address (an AF_INET socket for a
// specific IPv6 address, a v6-only socket for an IPv4 one).
func hostBindAddr(family int, v6only bool, p Published) (netip.AddrPort, bool) {
	port := p.ParentPort
	ip := p.ParentIP
	if ip.IsValid() {
		ip = ip.Unmap()
	}
	switch family {
	case afInet:
		switch {
		case !ip.IsValid() || ip.IsUnspecified():
			return netip.AddrPortFrom(netip.IPv4Unspecified(), port), true
		case ip.Is4():
			return netip.AddrPortFrom(ip, port), true
		}
		return netip.AddrPort{}, false
	case afInet6:
		switch {
		case !ip.IsValid() || (ip.Is6() && ip.IsUnspecified()):
			return netip.AddrPortFrom(netip.IPv6Unspecified(), port), true
		case ip.Is6():
			return netip.AddrPortFrom(ip, port), true
		case v6only:
			return netip.AddrPort{}, false
		}
		// An IPv4 address (0.0.0.0 included: the v4 wildcard) on a
		// dual-stack socket.
		return netip.AddrPortFrom(netip.AddrFrom16(ip.As16()), port), true
	}
	return netip.AddrPort{}, false
}

// pickBind chooses among the published ports a bind matched the host
// address that serves the most of them: a dual-stack socket takes the IPv6
// wildcard when one of them is, which covers the IPv4 wildcard too.
func pickBind(family int, v6only bool, match []Published) (netip.AddrPort, bool) {
	if family == afInet6 {
		for _, p := range match {
			if !p.ParentIP.IsValid() || p.ParentIP.Is6() && !p.ParentIP.Is4In6() && p.ParentIP.IsUnspecified() {
				return hostBindAddr(family, v6only, p)
			}
		}
	}
	for _, p := range match {
		if a, ok := hostBindAddr(family, v6only, p); ok {
			return a, true
		}
	}
	return netip.AddrPort{}, false
}

// reachBound is the address a client socket of family connects to on the
// host to reach a listener bound at bound. ok is false where it cannot.
func reachBound(family int, bound netip.AddrPort, boundV6only bool) (netip.AddrPort, bool) {
	a, port := bound.Addr(), bound.Port()
	var v4 netip.Addr // the IPv4 address that reaches it, if any
	switch {
	case a.Is4():
		v4 = a
		if a.IsUnspecified() {
			v4 = netip.AddrFrom4([4]byte{127, 0, 0, 1})
		}
	case a.Is4In6():
		v4 = a.Unmap()
		if v4.IsUnspecified() {
			v4 = netip.AddrFrom4([4]byte{127, 0, 0, 1})
		}
	case a.IsUnspecified() && !boundV6only:
		v4 = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	}
	switch family {
	case afInet:
		if v4.IsValid() {
			return netip.AddrPortFrom(v4, port), true
		}
	case afInet6:
		switch {
		case a.Is6() && !a.Is4In6() && a.IsUnspecified():
			return netip.AddrPortFrom(netip.IPv6Loopback(), port), true
		case a.Is6() && !a.Is4In6():
			return netip.AddrPortFrom(a, port), true
		case v4.IsValid():
			return netip.AddrPortFrom(netip.AddrFrom16(v4.As16()), port), true
		}
	}
	return netip.AddrPort{}, false
}

// Policy decides what happens to a connect or sendto from the namespace.
type Policy struct {
	// Self are the namespace's addresses on its device.
	Self []netip.Addr
	// Gateways are the driver's gateway addresses: they reach the host's
	// loopback when HostLoopback is set, and the driver only otherwise.
	Gateways     []netip.Addr
	HostLoopback bool
	// Ignore are never bypassed (--bypass-ignore).
	Ignore []netip.Prefix
}

type action int

const (
	keep     action = iota // the kernel runs the call on the namespace's socket
	egress                 // a host socket, the call as the program made it
	redirect               // a host socket connected to another address
)

// connect decides for a connect (or sendto) to dst. own are the
// namespace's routed prefixes; bypassed finds the host listener of a port
// bound through the bypass (transport is the socket's).
func (p *Policy) connect(family int, dst netip.AddrPort, own []netip.Prefix, bypassed func(port uint16) (netip.AddrPort, bool)) (action, netip.AddrPort) {
	a := dst.Addr()
	if a.Zone() != "" || dst.Port() == 0 {
		return keep, netip.AddrPort{}
	}
	mapped := a.Is4In6()
	a = a.Unmap()
	back := func(t netip.AddrPort) netip.AddrPort {
		// An AF_INET6 socket that named an IPv4 address reaches IPv4
		// targets through their mapped form.
		if family == afInet6 && t.Addr().Is4() {
			return netip.AddrPortFrom(netip.AddrFrom16(t.Addr().As16()), t.Port())
		}
		return t
	}
	if a.IsLoopback() || slices.Contains(p.Self, a) {
		if bypassed != nil {
			if t, ok := bypassed(dst.Port()); ok {
				return redirect, t
			}
		}
		return keep, netip.AddrPort{}
	}
	if slices.Contains(p.Gateways, a) {
		if !p.HostLoopback {
			return keep, netip.AddrPort{}
		}
		lo := netip.AddrFrom4([4]byte{127, 0, 0, 1})
		if a.Is6() {
			lo = netip.IPv6Loopback()
		}
		if mapped || family == afInet6 && lo.Is4() {
			return redirect, back(netip.AddrPortFrom(lo, dst.Port()))
		}
		return redirect, netip.AddrPortFrom(lo, dst.Port())
	}
	if a.IsUnspecified() || a.IsMulticast() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() || a.IsInterfaceLocalMulticast() {
		return keep, netip.AddrPort{}
	}
	a4 := netip.MustParseAddr("255.255.255.255")
	if a == a4 {
		return keep, netip.AddrPort{}
	}
	for _, set := range [][]netip.Prefix{p.Ignore, own} {
		for _, pr := range set {
			if pr.Contains(a) {
				return keep, netip.AddrPort{}
			}
		}
	}
	return egress, netip.AddrPort{}
}
