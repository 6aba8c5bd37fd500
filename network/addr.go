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
	gatewayOffset = 2
	dnsOffset     = 3
	// maxPrefixBits is the longest prefix that still holds the child's .100.
	maxPrefixBits = 25
)

// ParseCIDR parses the --cidr value: an IPv4 network address (host bits zero)
// with room for the child's .100 address, and an ordinary unicast network
// (see CheckCIDR).
func ParseCIDR(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return netip.Prefix{}, errors.New("cidr is empty: give a network like 10.0.2.0/24, or leave --cidr out for the default")
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("cidr %q is not an address/length pair: give a network like 10.0.2.0/24", s)
	}
	if !p.Addr().Is4() || p.Addr().Is4In6() {
		return netip.Prefix{}, fmt.Errorf("cidr %q is not IPv4: user-mode networks are IPv4 (like 10.0.2.0/24), IPv6 is added with --ipv6", s)
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
}

// CheckCIDR checks a network address for every driver: not the
// unspecified, loopback or multicast network (nor one that contains them),
// and long enough a prefix to hold the child's .100 (1 to 25 bits, which
// is slirp4netns' own range).
func CheckCIDR(p netip.Prefix) error {
	for _, sp := range special {
		if p.Overlaps(sp.net) {
			return fmt.Errorf("cidr %s contains %s addresses (%s): use a private network like 10.0.2.0/24", p, sp.what, sp.net)
		}
	}
	if p.Bits() > maxPrefixBits {
		return fmt.Errorf("cidr %s is too small: the child gets host .%d, so use a /%d or shorter prefix (like %s)",
			p, childOffset, maxPrefixBits, netip.PrefixFrom(p.Addr(), 24).Masked())
	}
	return nil
}

// Addresses returns the child's address, the gateway and the DNS forwarder
// of a network returned by ParseCIDR: its hosts .100, .2 and .3.
func Addresses(p netip.Prefix) (child, gateway, dns netip.Addr) {
	return nth(p, childOffset), nth(p, gatewayOffset), nth(p, dnsOffset)
}

func nth(p netip.Prefix, n uint32) netip.Addr {
	b := p.Masked().Addr().As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v += n
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

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
	if c.IPv6 && c.MTU < MinMTU6 {
		return c, fmt.Errorf("mtu %d is too small for IPv6: use at least %d, or drop --ipv6", c.MTU, MinMTU6)
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
