package port

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
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
	if sp.ParentIP, err = parseAddr("parentIP", parentIP); err != nil {
		return sp, fmt.Errorf("parse port spec %q: %w", s, err)
	}
	if sp.ChildIP, err = parseAddr("childIP", childIP); err != nil {
		return sp, fmt.Errorf("parse port spec %q: %w", s, err)
	}
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

// parseAddr parses an address field of a spec; "" is the zero Addr.
func parseAddr(field, s string) (netip.Addr, error) {
	if s == "" {
		return netip.Addr{}, nil
	}
	ip, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, &invalidSpecError{fmt.Sprintf("invalid %s %q: %s", field, s, addrWant[field])}
	}
	return ip, nil
}

var addrWant = map[string]string{
	"parentIP": "want an IPv4 or IPv6 address without zone, or empty for all addresses",
	"childIP":  "want an IPv4 or IPv6 address, or empty for 127.0.0.1",
}

// Validate checks a spec as the API receives it: a known proto, ports in
// 1..65535, addresses without zone that match the proto's family.
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
	if ip := s.ParentIP; ip.IsValid() {
		if ip.Zone() != "" {
			return fmt.Errorf("invalid parentIP %q: %s", ip, addrWant["parentIP"])
		}
		if err := familyMatches(s.Proto, ip); err != nil {
			return fmt.Errorf("parentIP %q: %w", ip, err)
		}
	}
	if ip := s.ChildIP; ip.IsValid() {
		if ip.Zone() != "" {
			return fmt.Errorf("invalid childIP %q: %s", ip, addrWant["childIP"])
		}
		if ip.IsUnspecified() || ip.IsMulticast() {
			return fmt.Errorf("invalid childIP %q: want a unicast address the child listens on", ip)
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
	ip := s.ParentIP
	family := s.Proto[len(s.Proto)-1]
	if !ip.IsValid() || ip.IsUnspecified() {
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
					return fmt.Errorf("conflict with ID %d (%s %s): remove it first or pick another parent port", e.ID, e.Spec.Proto, e.Spec.ParentString())
				}
			}
		}
	}
	return nil
}

// hostString is ip for a host:port, bracketed when IPv6; def for the zero
// Addr.
func hostString(ip netip.Addr, def string) string {
	switch {
	case !ip.IsValid():
		return def
	case ip.Is6():
		return "[" + ip.String() + "]"
	}
	return ip.String()
}

// String formats s in RootlessKit's grammar,
// PARENTIP:PARENTPORT[:CHILDIP]:CHILDPORT/PROTO, which ParseSpec reads
// back; an empty parent IP (all addresses) gives ":8080:80/tcp".
func (s Spec) String() string {
	out := hostString(s.ParentIP, "") + ":" + strconv.Itoa(s.ParentPort) + ":"
	if s.ChildIP.IsValid() {
		out += hostString(s.ChildIP, "") + ":"
	}
	return out + strconv.Itoa(s.ChildPort) + "/" + s.Proto
}

// ParentString is the listening side for display: "*:8080" for all
// addresses, "[::1]:8080", "127.0.0.1:8080".
func (s Spec) ParentString() string {
	return hostString(s.ParentIP, "*") + ":" + strconv.Itoa(s.ParentPort)
}

// ChildTarget is where connections go inside the child: ChildIP, or
// loopback of the proto's family (127.0.0.1 unless the proto is tcp6 or
// udp6), as RootlessKit dials.
func (s Spec) ChildTarget() netip.AddrPort {
	ip := netip.AddrFrom4([4]byte{127, 0, 0, 1})
	if s.Proto != "" && s.Proto[len(s.Proto)-1] == '6' {
		ip = netip.IPv6Loopback()
	}
	if s.ChildIP.IsValid() {
		ip = s.ChildIP.Unmap()
	}
	return netip.AddrPortFrom(ip, uint16(s.ChildPort))
}

// ListenAddr returns the host:port to listen on for s, and the Go network
// name ("tcp", "tcp4", ...). An empty parent IP means all addresses.
func ListenAddr(s Spec) (network, addr string) {
	return s.Proto, hostString(s.ParentIP, "") + ":" + strconv.Itoa(s.ParentPort)
}

// specJSON is Spec as RootlessKit's JSON has it, addresses as strings.
type specJSON struct {
	Proto      string `json:"proto,omitempty"`
	ParentIP   string `json:"parentIP,omitempty"`
	ParentPort int    `json:"parentPort,omitempty"`
	ChildPort  int    `json:"childPort,omitempty"`
	ChildIP    string `json:"childIP,omitempty"`
}

// UnmarshalJSON reads RootlessKit's JSON. A bad address is reported with
// the field's JSON name and what it wants, wrapping ErrInvalidSpec.
func (s *Spec) UnmarshalJSON(b []byte) error {
	var j specJSON
	if err := json.Unmarshal(b, &j); err != nil {
		// Name the public type, as decoding straight into Spec would.
		var ute *json.UnmarshalTypeError
		if errors.As(err, &ute) {
			if ute.Type == reflect.TypeFor[specJSON]() {
				ute.Type = reflect.TypeFor[Spec]()
			}
			if ute.Struct == "specJSON" {
				ute.Struct = "Spec"
			}
		}
		return err
	}
	parent, err := parseAddr("parentIP", j.ParentIP)
	if err != nil {
		return err
	}
	child, err := parseAddr("childIP", j.ChildIP)
	if err != nil {
		return err
	}
	*s = Spec{Proto: j.Proto, ParentIP: parent, ParentPort: j.ParentPort, ChildPort: j.ChildPort, ChildIP: child}
	return nil
}

// ErrInvalidSpec matches UnmarshalJSON's errors about a field's value (as
// opposed to malformed JSON).
var ErrInvalidSpec = errors.New("invalid port spec")

type invalidSpecError struct{ msg string }

func (e *invalidSpecError) Error() string        { return e.msg }
func (e *invalidSpecError) Is(target error) bool { return target == ErrInvalidSpec }
