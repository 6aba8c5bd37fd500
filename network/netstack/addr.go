package netstack

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// Defaults shared with RootlessKit's in-process gVisor driver, so a script
// that hard-codes 10.0.2.1 or 10.0.2.100 keeps working.
var (
	defaultCIDR = netip.MustParsePrefix("10.0.2.0/24")
	// ula6 is the IPv6 prefix used with Config.IPv6. It is not slirp4netns'
	// fd00::/64 because that prefix is common on real LANs (this very CI host
	// has fd00::2/64 on eth0); a /64 that overlapped the host's would make
	// those hosts unreachable from the namespace. The bytes spell "unroot".
	ula6 = netip.MustParsePrefix("fd00:756e:726f:6f74::/64")
)

const (
	defaultMTU    = 65520
	defaultIfName = "tap0"
	// maxMTU matches RootlessKit's --mtu limit.
	maxMTU = 65521
	// childHost and gatewayHost are the host parts of the child and gateway
	// addresses inside the CIDR (and inside ula6). The DNS forwarder shares
	// the gateway address, as in RootlessKit's gvisor-tap-vsock driver.
	childHost   = 100
	gatewayHost = 1
	// childHost6 reads as "::100" so the IPv6 address mirrors the IPv4 one.
	childHost6 = 0x100
)

// plan is the addressing of one namespace, computed from Config alone.
type plan struct {
	ifName   string
	mtu      int
	addr     netip.Prefix // child address with the CIDR's length
	gateway  netip.Addr
	addr6    netip.Prefix
	gateway6 netip.Addr
}

// errBadConfig marks errors in the user's options, as opposed to host failures.
var errBadConfig = errors.New("invalid network option")

// makePlan validates the user-facing options and derives the addresses. It
// is pure so table tests and the fuzzer can drive it.
func makePlan(cidr netip.Prefix, mtu int, ifName string, ipv6 bool) (plan, error) {
	p := plan{ifName: ifName, mtu: mtu}
	if p.ifName == "" {
		p.ifName = defaultIfName
	}
	if strings.ContainsAny(p.ifName, "/ \t\n") || len(p.ifName) > 15 {
		return plan{}, fmt.Errorf("check --ifname %q: must be at most 15 characters without '/' or spaces, e.g. tap0: %w", p.ifName, errBadConfig)
	}
	if p.mtu == 0 {
		p.mtu = defaultMTU
	}
	minMTU := 576
	if ipv6 {
		minMTU = 1280
	}
	if p.mtu < minMTU || p.mtu > maxMTU {
		return plan{}, fmt.Errorf("check --mtu %d: must be between %d and %d (0 means %d): %w", mtu, minMTU, maxMTU, defaultMTU, errBadConfig)
	}
	if !cidr.IsValid() {
		cidr = defaultCIDR
	}
	if !cidr.Addr().Is4() || cidr.Addr().Is4In6() {
		return plan{}, fmt.Errorf("check --cidr %s: must be an IPv4 network like 10.0.2.0/24 (IPv6 comes from --ipv6): %w", cidr, errBadConfig)
	}
	if cidr.Masked() != cidr {
		return plan{}, fmt.Errorf("check --cidr %s: must be a network address like %s: %w", cidr, cidr.Masked(), errBadConfig)
	}
	// The child sits at host number 100, so the network needs at least
	// 128 addresses.
	if cidr.Bits() > 25 {
		return plan{}, fmt.Errorf("check --cidr %s: the prefix must be /25 or shorter so that .%d fits, e.g. %s: %w", cidr, childHost, netip.PrefixFrom(cidr.Addr(), 24).Masked(), errBadConfig)
	}
	if cidr.Addr().IsLoopback() || cidr.Addr().IsMulticast() || cidr.Addr().IsUnspecified() {
		return plan{}, fmt.Errorf("check --cidr %s: must be a private unicast network like 10.0.2.0/24: %w", cidr, errBadConfig)
	}
	p.addr = netip.PrefixFrom(nth(cidr.Addr(), childHost), cidr.Bits())
	p.gateway = nth(cidr.Addr(), gatewayHost)
	if ipv6 {
		p.addr6 = netip.PrefixFrom(nth(ula6.Addr(), childHost6), ula6.Bits())
		p.gateway6 = nth(ula6.Addr(), gatewayHost)
	}
	return p, nil
}

// nth returns base plus n in its last bytes.
func nth(base netip.Addr, n uint32) netip.Addr {
	b := base.AsSlice()
	carry := n
	for i := len(b) - 1; i >= 0 && carry > 0; i-- {
		sum := uint32(b[i]) + carry&0xff
		b[i] = byte(sum)
		carry = carry>>8 + sum>>8
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}
