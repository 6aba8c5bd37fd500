package network

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Defaults every user-mode driver (slirp4netns, pasta, netstack) shares, so
// that a command sees the same addresses whichever driver carries it.
const (
	DefaultMTU    = 65520
	DefaultIfName = "tap0"
	// MaxMTU is the largest MTU slirp4netns accepts (and RootlessKit allows).
	MaxMTU = 65521
	// MinMTU is the smallest MTU IPv4 works with (RFC 791).
	MinMTU = 68
	// MinMTU6 is the smallest MTU IPv6 works with (RFC 8200).
	MinMTU6 = 1280
)

// DefaultCIDR is 10.0.2.0/24, the network slirp4netns and RootlessKit use.
var DefaultCIDR = netip.MustParsePrefix("10.0.2.0/24")

// DNS6 is the IPv6 DNS address slirp4netns answers on with --enable-ipv6.
var DNS6 = netip.MustParseAddr("fd00::3")

// Host offsets inside the CIDR. They are fixed by slirp4netns (and kept by
// every other driver) so tools that hard-code 10.0.2.2/10.0.2.3 keep working.
const (
	childOffset   = 100
	childOffset6  = 0x100
	gatewayOffset = 2
	dnsOffset     = 3
	// maxPrefixBits is the longest prefix that still holds the child's .100,
	// and maxPrefixBits6 the longest that holds ::100 (0x100).
	maxPrefixBits  = 25
	maxPrefixBits6 = 119
)

// ParseCIDR parses the --cidr value: an IPv4 network address (host bits
// zero) with room for the child's .100 address, or an IPv6 one with room
// for its ::100, which makes the namespace IPv6-only (no IPv4 but
// loopback's); either an ordinary unicast network (see CheckCIDR).
func ParseCIDR(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return netip.Prefix{}, errors.New("cidr is empty: give a network like 10.0.2.0/24 (or fd00:1::/64 for IPv6 only), or leave --cidr out for the default")
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("cidr %q is not an address/length pair: give a network like 10.0.2.0/24 or fd00:1::/64", s)
	}
	if p.Addr().Is4In6() {
		return netip.Prefix{}, fmt.Errorf("cidr %q is an IPv4-mapped IPv6 network: give the IPv4 network (like 10.0.2.0/24)", s)
	}
	if m := p.Masked(); m != p {
		return netip.Prefix{}, fmt.Errorf("cidr must be like %s, not like %s", m, p)
	}
	return p, CheckCIDR(p)
}

// special are the networks a namespace's own network must not contain:
// the host's loopback would be shadowed, and multicast or unspecified
// addresses cannot be a host's (slirp4netns and pasta fail on them, or
// quietly pick another network).
var special = []struct {
	net  netip.Prefix
	what string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "unspecified"},
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback"},
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast"},
	{netip.MustParsePrefix("::/128"), "unspecified"},
	{netip.MustParsePrefix("::1/128"), "loopback"},
	{netip.MustParsePrefix("::ffff:0:0/96"), "IPv4-mapped"},
	{netip.MustParsePrefix("ff00::/8"), "multicast"},
}

// CheckCIDR checks a network address for every driver: not the
// unspecified, loopback or multicast network (nor one that contains them),
// and long enough a prefix to hold the child's .100 (1 to 25 bits, which
// is slirp4netns' own range) or ::100 (up to 119 bits).
func CheckCIDR(p netip.Prefix) error {
	for _, sp := range special {
		if p.Overlaps(sp.net) {
			example := "10.0.2.0/24"
			if p.Addr().Is6() {
				example = "fd00:1::/64"
			}
			return fmt.Errorf("cidr %s contains %s addresses (%s): use a private network like %s", p, sp.what, sp.net, example)
		}
	}
	maxBits, usual := maxPrefixBits, 24
	if p.Addr().Is6() {
		maxBits, usual = maxPrefixBits6, 64
	}
	if p.Bits() > maxBits {
		return fmt.Errorf("cidr %s is too small: the child gets host %s, so use a /%d or shorter prefix (like %s)",
			p, nth(p, childHost(p)), maxBits, netip.PrefixFrom(p.Addr(), usual).Masked())
	}
	return nil
}

// Addresses returns the child's address, the gateway and the DNS forwarder
// of a network returned by ParseCIDR: its hosts .100, .2 and .3 (::100,
// ::2 and ::3 for IPv6).
func Addresses(p netip.Prefix) (child, gateway, dns netip.Addr) {
	return nth(p, childHost(p)), nth(p, gatewayOffset), nth(p, dnsOffset)
}

// childHost is the child's host number: 100, or 0x100 in IPv6, which reads
// "::100" as slirp4netns' fd00::100 does.
func childHost(p netip.Prefix) uint32 {
	if p.Addr().Is6() {
		return childOffset6
	}
	return childOffset
}

// nth is host n of network p.
func nth(p netip.Prefix, n uint32) netip.Addr { return AddrAdd(p.Masked().Addr(), n) }

// AddrAdd is base plus n, carried from its last byte up: host n of the
// network whose address is base.
func AddrAdd(base netip.Addr, n uint32) netip.Addr {
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

// IPv6Only reports a configuration whose CIDR is IPv6: the namespace gets
// no IPv4 address or route (loopback keeps 127.0.0.1).
func (c Config) IPv6Only() bool { return c.CIDR.IsValid() && c.CIDR.Addr().Is6() }

// ValidateMTU checks an --mtu value; 0 means the driver default.
func ValidateMTU(mtu int) error {
	switch {
	case mtu == 0:
		return nil
	case mtu < 0:
		return fmt.Errorf("mtu %d is negative: use 0 for the default (%d) or a value from %d to %d", mtu, DefaultMTU, MinMTU, MaxMTU)
	case mtu > MaxMTU:
		return fmt.Errorf("mtu must be <= %d, not %d: use 0 for the default (%d)", MaxMTU, mtu, DefaultMTU)
	case mtu < MinMTU:
		return fmt.Errorf("mtu %d is too small for IPv4: use a value from %d to %d, or 0 for the default (%d)", mtu, MinMTU, MaxMTU, DefaultMTU)
	}
	return nil
}

// ValidateIfName checks an --ifname value: a Linux interface name.
func ValidateIfName(name string) error {
	const ifNameMax = 15 // IFNAMSIZ - 1
	switch {
	case name == "":
		return errors.New("ifname is empty: give a name like tap0")
	case strings.Contains(name, "/"):
		return fmt.Errorf("ifname %q must not contain '/': give a name like tap0", name)
	case len(name) > ifNameMax:
		return fmt.Errorf("ifname %q is longer than %d bytes: give a shorter name like tap0", name, ifNameMax)
	case name == "." || name == "..":
		return fmt.Errorf("ifname %q is not a valid interface name: give a name like tap0", name)
	}
	for _, r := range name {
		if r <= ' ' || r == ':' || r >= 0x7f {
			return fmt.Errorf("ifname %q contains %q, which Linux rejects in interface names: give a name like tap0", name, r)
		}
	}
	return nil
}

// ParseTriState parses the true|false|auto values of options such as
// --slirp4netns-sandbox. The empty string is "false", RootlessKit's default.
func ParseTriState(name, v string) (TriState, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "", "false", "0":
		return Off, nil
	case "true", "1":
		return On, nil
	case "auto":
		return Auto, nil
	}
	return Off, fmt.Errorf("%s must be true, false or auto, not %s", name, strconv.Quote(v))
}

// TriState is an option that may be forced on, off, or left to detection.
type TriState int

const (
	Off TriState = iota
	On
	Auto
)

func (t TriState) String() string {
	switch t {
	case On:
		return "true"
	case Auto:
		return "auto"
	}
	return "false"
}

// WithDefaults validates c and fills in the zero values (MTU 65520,
// CIDR 10.0.2.0/24, IfName tap0). A CIDR that is set must already be a
// network address (ParseCIDR's rules).
func (c Config) WithDefaults() (Config, error) {
	if err := ValidateMTU(c.MTU); err != nil {
		return c, err
	}
	if c.MTU == 0 {
		c.MTU = DefaultMTU
	}
	if (c.IPv6 || c.IPv6Only()) && c.MTU < MinMTU6 {
		return c, fmt.Errorf("mtu %d is too small for IPv6: use at least %d, or drop --ipv6 (or use an IPv4 --cidr)", c.MTU, MinMTU6)
	}
	if !c.CIDR.IsValid() {
		c.CIDR = DefaultCIDR
	} else if _, err := ParseCIDR(c.CIDR.String()); err != nil {
		return c, err
	}
	if c.IfName == "" {
		c.IfName = DefaultIfName
	} else if err := ValidateIfName(c.IfName); err != nil {
		return c, err
	}
	return c, nil
}
