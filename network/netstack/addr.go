package netstack

import (
	"fmt"
	"net/netip"

	"github.com/unroot/unroot/network"
)

var (
	// ula6 is the IPv6 prefix used with Config.IPv6. It is not slirp4netns'
	// fd00::/64 because that prefix is common on real LANs (this very CI host
	// has fd00::2/64 on eth0); a /64 that overlapped the host's would make
	// those hosts unreachable from the namespace. The bytes spell "unroot".
	ula6 = netip.MustParsePrefix("fd00:756e:726f:6f74::/64")
)

const (
	// childHost and gatewayHost are the host parts of the child and gateway
	// addresses inside the CIDR (and inside ula6). The DNS forwarder shares
	// the gateway address, as in RootlessKit's gvisor-tap-vsock driver.
	childHost   = 100
	gatewayHost = 1
	// dnsHost is slirp4netns' DNS address (10.0.2.3), answered too: users
	// and images coming from slirp4netns hard-code it.
	dnsHost = 3
	// childHost6 reads as "::100" so the IPv6 address mirrors the IPv4 one.
	childHost6 = 0x100
)

// plan is the addressing of one namespace, computed from Config alone.
type plan struct {
	ifName   string
	mtu      int
	addr     netip.Prefix // child address with the CIDR's length
	gateway  netip.Addr
	dns      netip.Addr // slirp4netns' DNS address; resolv.conf names the gateway
	addr6    netip.Prefix
	gateway6 netip.Addr
}

// makePlan validates the user-facing options with the rules every driver
// shares (network.Config.WithDefaults) and derives this driver's addresses.
// It is pure so table tests and the fuzzer can drive it.
func makePlan(cfg network.Config) (plan, error) {
	c, err := cfg.WithDefaults()
	if err != nil {
		return plan{}, err
	}
	cidr := c.CIDR
	if cidr.Addr().IsLoopback() || cidr.Addr().IsMulticast() || cidr.Addr().IsUnspecified() {
		return plan{}, fmt.Errorf("cidr %s is not a private unicast network: use one like 10.0.2.0/24", cidr)
	}
	p := plan{ifName: c.IfName, mtu: c.MTU}
	if c.IPv6Only() {
		// The prefix given, and no IPv4 on the tap.
		p.addr6 = netip.PrefixFrom(network.AddrAdd(cidr.Addr(), childHost6), cidr.Bits())
		p.gateway6 = network.AddrAdd(cidr.Addr(), gatewayHost)
		return p, nil
	}
	p.addr = netip.PrefixFrom(network.AddrAdd(cidr.Addr(), childHost), cidr.Bits())
	p.gateway = network.AddrAdd(cidr.Addr(), gatewayHost)
	p.dns = network.AddrAdd(cidr.Addr(), dnsHost)
	if c.IPv6 {
		p.addr6 = netip.PrefixFrom(network.AddrAdd(ula6.Addr(), childHost6), ula6.Bits())
		p.gateway6 = network.AddrAdd(ula6.Addr(), gatewayHost)
	}
	return p, nil
}
