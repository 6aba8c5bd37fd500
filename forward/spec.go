// Package forward is reverse port forwarding: a host service (a TCP or UDP
// port on one of the host's addresses, or a host unix socket) appears
// inside the namespace on a port of its own, so a program inside reaches
// that one service, and nothing else, with the host's loopback cut off.
//
// The launcher has the namespace make the listening socket (it is handed
// over with the sockets of the builtin port driver) and binds it on the
// namespace's wildcard address, so 127.0.0.1:NSPORT, [::1]:NSPORT and the
// tap's address all answer. Connections are relayed by internal/relay's
// splice engine, as published ports are: no process or goroutine per
// connection.
package forward

import (
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
)

// Spec is one forward, as the API's JSON carries it.
type Spec struct {
	// Proto is "tcp" or "udp".
	Proto string `json:"proto"`
	// HostIP and HostPort are the host service (TCP or UDP).
	HostIP   netip.Addr `json:"hostIP,omitzero"`
	HostPort int        `json:"hostPort,omitempty"`
	// HostPath is a host unix stream socket, instead of HostIP and
	// HostPort; Proto is then "tcp" (the port inside is a TCP port).
	HostPath string `json:"hostPath,omitempty"`
	// NSPort is the port inside the namespace.
	NSPort int `json:"nsPort"`
}

// Status is a forward and its ID.
type Status struct {
	ID   int  `json:"id"`
	Spec Spec `json:"spec"`
	// Warning, in the answer to an add only, says why the host service
	// cannot be reached yet (a unix socket that does not exist); the
	// forward is made all the same and works once the service is there.
	Warning string `json:"warning,omitempty"`
}

// ParseSpec parses the --forward grammar:
//
//	HOSTADDR:HOSTPORT:NSPORT[/PROTO]   127.0.0.1:5000:5000/tcp, [::1]:53:5353/udp
//	/HOST/UNIX/SOCKET:NSPORT[/tcp]     /run/user/1000/db.sock:5432
//
// PROTO is tcp (the default) or udp.
func ParseSpec(s string) (Spec, error) {
	in := strings.TrimSpace(s)
	i := strings.LastIndexByte(in, ':')
	if in == "" || i < 0 {
		return Spec{}, fmt.Errorf("forward %q: want HOSTADDR:HOSTPORT:NSPORT/PROTO (like 127.0.0.1:5000:5000/tcp) or /HOST/SOCKET:NSPORT", s)
	}
	head, tail := in[:i], in[i+1:]
	var sp Spec
	portText, proto, hasProto := strings.Cut(tail, "/")
	sp.Proto = "tcp"
	if hasProto {
		sp.Proto = proto
	}
	n, err := strconv.Atoi(portText)
	if err != nil {
		return Spec{}, fmt.Errorf("forward %q: namespace port %q is not a number: want HOSTADDR:HOSTPORT:NSPORT/PROTO", s, portText)
	}
	sp.NSPort = n
	if strings.HasPrefix(head, "/") {
		sp.HostPath = head
	} else {
		ap, err := netip.ParseAddrPort(head)
		if err != nil {
			return Spec{}, fmt.Errorf("forward %q: host address %q is not IP:PORT (an IPv6 address goes in brackets, like [::1]:5000): want HOSTADDR:HOSTPORT:NSPORT/PROTO", s, head)
		}
		sp.HostIP, sp.HostPort = ap.Addr().Unmap(), int(ap.Port())
		if ap.Addr().Zone() != "" {
			return Spec{}, fmt.Errorf("forward %q: host address %s has a zone: give an address without %%zone", s, ap.Addr())
		}
	}
	if err := Validate(sp); err != nil {
		return Spec{}, fmt.Errorf("forward %q: %w", s, err)
	}
	return sp, nil
}

// Validate checks a spec from any source (flags, the API, a Launcher).
func Validate(sp Spec) error {
	switch sp.Proto {
	case "tcp", "udp":
	default:
		return fmt.Errorf("proto %q: want tcp or udp", sp.Proto)
	}
	if sp.NSPort < 1 || sp.NSPort > 65535 {
		return fmt.Errorf("namespace port %d: want 1 to 65535", sp.NSPort)
	}
	if sp.HostPath != "" {
		if sp.HostIP.IsValid() || sp.HostPort != 0 {
			return errors.New("give a host address and port or a host socket path, not both")
		}
		if !filepath.IsAbs(sp.HostPath) {
			return fmt.Errorf("host socket path %q is not absolute", sp.HostPath)
		}
		if sp.Proto != "tcp" {
			return fmt.Errorf("a host unix socket is forwarded to a TCP port, not %s", sp.Proto)
		}
		if len(sp.HostPath) > 107 {
			return fmt.Errorf("host socket path %q is longer than the 107 bytes a unix socket address holds", sp.HostPath)
		}
		return nil
	}
	if !sp.HostIP.IsValid() {
		return errors.New("no host address: give HOSTADDR:HOSTPORT (like 127.0.0.1:5000) or a host socket path")
	}
	if sp.HostIP.IsUnspecified() || sp.HostIP.IsMulticast() {
		return fmt.Errorf("host address %s is not one service's address: give the address it listens on, like 127.0.0.1", sp.HostIP)
	}
	if sp.HostPort < 1 || sp.HostPort > 65535 {
		return fmt.Errorf("host port %d: want 1 to 65535", sp.HostPort)
	}
	return nil
}

// Host is the host service as "127.0.0.1:5000", "[::1]:53" or the socket path.
func (sp Spec) Host() string {
	if sp.HostPath != "" {
		return sp.HostPath
	}
	return netip.AddrPortFrom(sp.HostIP, uint16(sp.HostPort)).String()
}

// String is the spec in ParseSpec's grammar.
func (sp Spec) String() string {
	return fmt.Sprintf("%s:%d/%s", sp.Host(), sp.NSPort, sp.Proto)
}

func (sp Spec) hostAddrPort() netip.AddrPort {
	return netip.AddrPortFrom(sp.HostIP, uint16(sp.HostPort))
}
