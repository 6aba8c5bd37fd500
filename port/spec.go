package port

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// ErrUnsupportedProto is wrapped by errors about protocols a driver cannot
// forward (sctp, or IPv6 protos on IPv4-only drivers).
var ErrUnsupportedProto = errors.New("protocol not supported")

// Protos lists every proto RootlessKit's grammar accepts.
var Protos = []string{"tcp", "tcp4", "tcp6", "udp", "udp4", "udp6", "sctp", "sctp4", "sctp6"}

// ParseOptions selects the grammar variant.
type ParseOptions struct {
	// Lenient allows what `unroot run -p` allows on top of RootlessKit's
	// grammar: the parent IP may be left out ("8080:80/tcp" listens on all
	// addresses), a lone port means the same port on both sides ("80/tcp"),
	// and a missing "/PROTO" means tcp.
	Lenient bool
}

// ParseSpec parses one publish spec in RootlessKit's grammar,
// PARENTIP:PARENTPORT[:CHILDIP]:CHILDPORT/PROTO, with IPv6 addresses in
// brackets ("[::1]:8080:[::1]:80/tcp"). An empty parent IP (":8080:80/tcp")
// means all addresses, as in RootlessKit. Comma-separated lists are split by
// the caller. The result is checked with Validate.
func ParseSpec(s string, opts ParseOptions) (Spec, error) {
	var sp Spec
	body, proto, ok := cutLast(s, "/")
	if !ok {
		if !opts.Lenient {
			return sp, fmt.Errorf("parse port spec %q: missing /PROTO: write it like 127.0.0.1:8080:80/tcp", s)
		}
		body, proto = s, "tcp"
	}
	sp.Proto = proto
	fields, err := splitFields(body)
	if err != nil {
		return sp, fmt.Errorf("parse port spec %q: %w", s, err)
	}
	var parentIP, parentPort, childIP, childPort string
	switch len(fields) {
	case 1:
		if !opts.Lenient {
			return sp, fmt.Errorf("parse port spec %q: want PARENTIP:PARENTPORT[:CHILDIP]:CHILDPORT/PROTO, e.g. 127.0.0.1:8080:80/tcp", s)
		}
		parentPort, childPort = fields[0], fields[0]
	case 2:
		if !opts.Lenient {
			return sp, fmt.Errorf("parse port spec %q: the parent IP is required: write 0.0.0.0:%s/%s (all addresses) or 127.0.0.1:%s/%s", s, body, proto, body, proto)
		}
		parentPort, childPort = fields[0], fields[1]
	case 3:
		// IP:PORT:PORT, or (lenient) PORT:IP:PORT.
		if opts.Lenient && isPort(fields[0]) && !isPort(fields[1]) {
			parentPort, childIP, childPort = fields[0], fields[1], fields[2]
		} else {
			parentIP, parentPort, childPort = fields[0], fields[1], fields[2]
		}
	case 4:
		parentIP, parentPort, childIP, childPort = fields[0], fields[1], fields[2], fields[3]
	default:
		return sp, fmt.Errorf("parse port spec %q: too many fields: want PARENTIP:PARENTPORT[:CHILDIP]:CHILDPORT/PROTO; put IPv6 addresses in [brackets]", s)
	}
	sp.ParentIP, sp.ChildIP = parentIP, childIP
	if sp.ParentPort, err = parsePort(parentPort); err != nil {
		return sp, fmt.Errorf("parse port spec %q: parent port: %w", s, err)
	}
	if sp.ChildPort, err = parsePort(childPort); err != nil {
		return sp, fmt.Errorf("parse port spec %q: child port: %w", s, err)
	}
	if err := Validate(sp); err != nil {
		return sp, fmt.Errorf("parse port spec %q: %w", s, err)
	}
	return sp, nil
}

// ParseSpecs parses a comma-separated list, as RootlessKit's slice flags do.
func ParseSpecs(s string, opts ParseOptions) ([]Spec, error) {
	var out []Spec
	for _, part := range strings.Split(s, ",") {
		sp, err := ParseSpec(part, opts)
		if err != nil {
			return nil, err
		}
		out = append(out, sp)
	}
	return out, nil
}

func cutLast(s, sep string) (before, after string, ok bool) {
	i := strings.LastIndex(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+len(sep):], true
}

// splitFields splits on colons, keeping bracketed IPv6 addresses whole.
func splitFields(s string) ([]string, error) {
	var out []string
	for {
		if strings.HasPrefix(s, "[") {
			end := strings.IndexByte(s, ']')
			if end < 0 {
				return nil, errors.New("missing ] after IPv6 address")
			}
			out = append(out, s[1:end])
			s = s[end+1:]
			if s == "" {
				return out, nil
			}
			if s[0] != ':' {
				return nil, fmt.Errorf("unexpected %q after ]: want \":PORT\" after a bracketed IPv6 address", s[:1])
			}
			s = s[1:]
			continue
		}
		i := strings.IndexByte(s, ':')
		if i < 0 {
			return append(out, s), nil
		}
		out = append(out, s[:i])
		s = s[i+1:]
	}
}

func isPort(s string) bool {
	_, err := parsePort(s)
	return err == nil
}

func parsePort(s string) (int, error) {
	if s == "" {
		return 0, errors.New("empty: want a number from 1 to 65535")
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 || s[0] == '+' {
		return 0, fmt.Errorf("%q is not a port: want a number from 1 to 65535", s)
	}
	return n, nil
}

// Transport is "tcp", "udp" or "sctp" for a proto such as "tcp6".
func Transport(proto string) string {
	return strings.TrimRight(proto, "46")
}

// Validate checks a spec as the API receives it: a known proto, ports in
// 1..65535, IP addresses that parse and match the proto's family.
func Validate(s Spec) error {
	known := false
	for _, p := range Protos {
		if s.Proto == p {
			known = true
		}
	}
	if !known {
		return fmt.Errorf("unknown proto %q: want one of tcp, tcp4, tcp6, udp, udp4, udp6", s.Proto)
	}
	if s.ParentPort < 1 || s.ParentPort > 65535 {
		return fmt.Errorf("invalid parentPort %d: want 1 to 65535", s.ParentPort)
	}
	if s.ChildPort < 1 || s.ChildPort > 65535 {
		return fmt.Errorf("invalid childPort %d: want 1 to 65535", s.ChildPort)
	}
	if s.ParentIP != "" {
		ip, err := netip.ParseAddr(s.ParentIP)
		if err != nil || ip.Zone() != "" {
			return fmt.Errorf("invalid parentIP %q: want an IPv4 or IPv6 address without zone, or empty for all addresses", s.ParentIP)
		}
		if err := familyMatches(s.Proto, ip); err != nil {
			return fmt.Errorf("parentIP %q: %w", s.ParentIP, err)
		}
	}
	if s.ChildIP != "" {
		ip, err := netip.ParseAddr(s.ChildIP)
		if err != nil || ip.Zone() != "" {
			return fmt.Errorf("invalid childIP %q: want an IPv4 or IPv6 address, or empty for 127.0.0.1", s.ChildIP)
		}
		if ip.IsUnspecified() || ip.IsMulticast() {
			return fmt.Errorf("invalid childIP %q: want a unicast address the child listens on", s.ChildIP)
		}
	}
	return nil
}

func familyMatches(proto string, ip netip.Addr) error {
	switch {
	case strings.HasSuffix(proto, "4") && !ip.Unmap().Is4():
		return fmt.Errorf("proto %s needs an IPv4 address: use %s6 or an IPv4 address", proto, Transport(proto))
	case strings.HasSuffix(proto, "6") && !(ip.Is6() && !ip.Is4In6()):
		return fmt.Errorf("proto %s needs an IPv6 address: use %s4 or an IPv6 address", proto, Transport(proto))
	}
	return nil
}

// binding is one (family, address) a listener occupies.
type binding struct {
	v6  bool
	any bool
	ip  netip.Addr
}

// bindings returns what a spec's listener occupies. tcp/udp on an empty or
// 0.0.0.0 address is dual-stack, as RootlessKit's Go listener is.
func bindings(s Spec) []binding {
	ip, err := netip.ParseAddr(s.ParentIP)
	family := s.Proto[len(s.Proto)-1]
	if err != nil || ip.IsUnspecified() {
		switch {
		case family == '4':
			return []binding{{any: true}}
		case family == '6':
			return []binding{{v6: true, any: true}}
		default:
			return []binding{{any: true}, {v6: true, any: true}}
		}
	}
	ip = ip.Unmap()
	return []binding{{v6: ip.Is6(), ip: ip}}
}

// Conflict reports whether s would listen where an existing port already
// listens: the same transport (tcp, udp) and port, and overlapping
// addresses. It returns an error naming the existing ID, or nil.
func Conflict(existing []Status, s Spec) error {
	for _, e := range existing {
		if Transport(e.Spec.Proto) != Transport(s.Proto) || e.Spec.ParentPort != s.ParentPort {
			continue
		}
		for _, a := range bindings(e.Spec) {
			for _, b := range bindings(s) {
				if a.v6 == b.v6 && (a.any || b.any || a.ip == b.ip) {
					return fmt.Errorf("conflict with ID %d (%s %s:%d): remove it first or pick another parent port", e.ID, e.Spec.Proto, displayIP(e.Spec.ParentIP), e.Spec.ParentPort)
				}
			}
		}
	}
	return nil
}

func displayIP(ip string) string {
	if ip == "" {
		return "*"
	}
	if strings.Contains(ip, ":") {
		return "[" + ip + "]"
	}
	return ip
}

// ListenAddr returns the host:port to listen on for s, and the Go network
// name ("tcp", "tcp4", ...). An empty parent IP means all addresses.
func ListenAddr(s Spec) (network, addr string) {
	return s.Proto, joinHostPort(s.ParentIP, s.ParentPort)
}

func joinHostPort(ip string, port int) string {
	if strings.Contains(ip, ":") {
		return "[" + ip + "]:" + strconv.Itoa(port)
	}
	return ip + ":" + strconv.Itoa(port)
}
