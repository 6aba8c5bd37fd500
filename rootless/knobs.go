package rootless

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/unroot/unroot/internal/copyup"
	"github.com/unroot/unroot/network"
)

// Port driver names a profile accepts.
const (
	PortDriverBuiltin     = "builtin"
	PortDriverSlirp4netns = "slirp4netns"
)

// Settings are the network and copy-up choices a profile starts from and
// its environment knobs adjust.
type Settings struct {
	// MTU of the namespace's device; 0 means the driver's default (65520).
	MTU int
	// CIDR of the user-mode network; it must be a network address.
	CIDR netip.Prefix
	// IPv6 adds slirp4netns's IPv6 network (fd00::/64).
	IPv6 bool
	// PortDriver is PortDriverBuiltin or PortDriverSlirp4netns.
	PortDriver string
	// DisableHostLoopback stops the namespace from reaching the host's
	// 127.0.0.1 through the gateway.
	DisableHostLoopback bool
	// CopyUp lists directories made writable inside (tmpfs+symlink).
	CopyUp []string
	// Bypass hands the namespace's sockets to the host kernel: "" or
	// "false" (off), "true" or "auto" (see docs/bypass.md).
	Bypass string
}

// Knob names, after "<PREFIX>_ROOTLESS_".
const (
	KnobMTU                 = "MTU"
	KnobCIDR                = "CIDR"
	KnobEnableIPv6          = "ENABLE_IPV6"
	KnobPortDriver          = "PORT_DRIVER"
	KnobDisableHostLoopback = "DISABLE_HOST_LOOPBACK"
	KnobCopyUpDirs          = "COPYUPDIRS"
	KnobBypass              = "BYPASS"
)

// KnobVar returns the environment variable of a knob, e.g.
// KnobVar("K3S", KnobMTU) is "K3S_ROOTLESS_MTU".
func KnobVar(prefix, knob string) string { return prefix + "_ROOTLESS_" + knob }

// ParseKnobs applies the <prefix>_ROOTLESS_* variables that getenv returns
// to def. It is pure: getenv is usually os.Getenv. A value that does not
// parse keeps the default and adds a warning, as k3s does, so a typo in a
// unit file does not stop the daemon; the exceptions are a CIDR (an address
// is either meant or not) and a copy-up directory that cannot be copied
// up, which are errors.
func ParseKnobs(prefix string, getenv func(string) string, def Settings) (s Settings, warnings []string, err error) {
	s = def
	s.CopyUp = append([]string(nil), def.CopyUp...)
	get := func(knob string) (string, string) {
		name := KnobVar(prefix, knob)
		return name, strings.TrimSpace(getenv(name))
	}
	if name, v := get(KnobMTU); v != "" {
		mtu, perr := strconv.Atoi(v)
		if perr == nil {
			perr = network.ValidateMTU(mtu)
		}
		if perr != nil {
			warnings = append(warnings, fmt.Sprintf("%s=%q: %v; using the default (%s)", name, v, unwrapNum(perr), mtuString(def.MTU)))
		} else {
			s.MTU = mtu
		}
	}
	if name, v := get(KnobCIDR); v != "" {
		p, perr := network.ParseCIDR(v)
		if perr == nil && p.Addr().Is6() {
			// This package runs slirp4netns, whose network always has IPv4.
			perr = fmt.Errorf("cidr %s is IPv6: the network here is slirp4netns', which is IPv4 (with %s_ROOTLESS_ENABLE_IPV6=true adding fd00::/64); give an IPv4 network like 10.41.0.0/16", p, prefix)
		}
		if perr != nil {
			return def, warnings, fmt.Errorf("%s: %w", name, perr)
		}
		s.CIDR = p
	}
	boolKnob := func(knob string, dst *bool) {
		name, v := get(knob)
		if v == "" {
			return
		}
		b, perr := strconv.ParseBool(v)
		if perr != nil {
			warnings = append(warnings, fmt.Sprintf("%s=%q: not a boolean (use true or false); using the default (%t)", name, v, *dst))
			return
		}
		*dst = b
	}
	boolKnob(KnobEnableIPv6, &s.IPv6)
	boolKnob(KnobDisableHostLoopback, &s.DisableHostLoopback)
	if name, v := get(KnobPortDriver); v != "" {
		switch d := strings.ToLower(v); d {
		case PortDriverBuiltin, PortDriverSlirp4netns:
			s.PortDriver = d
		default:
			warnings = append(warnings, fmt.Sprintf("%s=%q: unknown port driver (use builtin or slirp4netns); using %s", name, v, PortDriverBuiltin))
			s.PortDriver = PortDriverBuiltin
		}
	}
	if name, v := get(KnobBypass); v != "" {
		switch b := strings.ToLower(v); b {
		case "auto":
			s.Bypass = b
		default:
			if on, perr := strconv.ParseBool(b); perr == nil {
				s.Bypass = strconv.FormatBool(on)
			} else {
				warnings = append(warnings, fmt.Sprintf("%s=%q: use true, false or auto; bypass stays off", name, v))
				s.Bypass = "false"
			}
		}
	}
	if name, v := get(KnobCopyUpDirs); v != "" {
		for _, d := range strings.Split(v, ",") {
			d = strings.TrimSpace(d)
			if d == "" {
				continue
			}
			if verr := copyup.Validate(d); verr != nil {
				return def, warnings, fmt.Errorf("%s: copy-up %q: %w", name, d, verr)
			}
			s.CopyUp = append(s.CopyUp, d)
		}
	}
	return s, warnings, nil
}

func mtuString(mtu int) string {
	if mtu == 0 {
		return strconv.Itoa(network.DefaultMTU)
	}
	return strconv.Itoa(mtu)
}

// unwrapNum drops strconv's "strconv.Atoi: parsing "x": " preamble, which
// repeats the value the warning already shows.
func unwrapNum(err error) error {
	if ne, ok := err.(*strconv.NumError); ok {
		return fmt.Errorf("not a number (%v)", ne.Err)
	}
	return err
}
