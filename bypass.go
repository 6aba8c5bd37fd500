package unroot

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"syscall"

	"github.com/unroot/unroot/api"
	"github.com/unroot/unroot/internal/bypass"
	"github.com/unroot/unroot/internal/childinit"
	"github.com/unroot/unroot/internal/seccomp"
	"github.com/unroot/unroot/network"
	"github.com/unroot/unroot/port"
)

// BypassMode selects --bypass: whether the namespace's sockets are handed
// to the host kernel (docs/bypass.md).
type BypassMode string

const (
	// BypassOff ("" too) relays everything, as without the flag.
	BypassOff BypassMode = "off"
	// BypassOn fails the start when the kernel refuses the socket filter.
	BypassOn BypassMode = "on"
	// BypassAuto warns once and relays when the kernel refuses it.
	BypassAuto BypassMode = "auto"
)

// ParseBypassMode reads a --bypass value: "", "true" and "on" mean on.
func ParseBypassMode(s string) (BypassMode, error) {
	switch s {
	case "", "true", "on", "1":
		return BypassOn, nil
	case "auto":
		return BypassAuto, nil
	case "false", "off", "0":
		return BypassOff, nil
	}
	return "", fmt.Errorf("--bypass=%s: must be true, false or auto", s)
}

// Bypass configures the socket hand-off. The zero value is off.
type Bypass struct {
	Mode BypassMode
	// Ignore lists destinations that are never bypassed (--bypass-ignore),
	// besides the namespace's own networks and loopback.
	Ignore []netip.Prefix
	// HostLoopback: the driver's gateway reaches the host's loopback
	// (--disable-host-loopback=false), so a connect to it may be made on
	// the host's loopback directly.
	HostLoopback bool
}

// ParseBypassIgnore reads --bypass-ignore=CIDR,...
func ParseBypassIgnore(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		if s == "" {
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			if a, aerr := netip.ParseAddr(s); aerr == nil {
				p = netip.PrefixFrom(a, a.BitLen())
			} else {
				return nil, fmt.Errorf("--bypass-ignore %q: not a CIDR (e.g. 192.168.0.0/16 or fd00::/8)", s)
			}
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

func (l *Launcher) bypassOn() bool {
	return l.Bypass.Mode == BypassOn || l.Bypass.Mode == BypassAuto
}

func (l *Launcher) validateBypass() error {
	switch l.Bypass.Mode {
	case "", BypassOff, BypassOn, BypassAuto:
	default:
		return configErrorf("Bypass.Mode", "{Bypass.Mode} %q: must be on, off or auto", l.Bypass.Mode)
	}
	if l.bypassOn() && (!l.privateNet() || l.DetachNetNS) {
		return configErrorf("Bypass.Mode", "{Bypass.Mode=on} needs the command in a network namespace of its own: use {Bypass.Mode=private}")
	}
	return nil
}

func (l *Launcher) childBypass() childinit.BypassMode {
	switch l.Bypass.Mode {
	case BypassOn:
		return childinit.BypassOn
	case BypassAuto:
		return childinit.BypassAuto
	}
	return childinit.BypassOff
}

// startBypass serves the filter's listener that came with the Started
// message; under auto, reason says why there is none.
func (l *Launcher) startBypass(files []*os.File, reason string, setup network.Setup) error {
	if !l.bypassOn() {
		return nil
	}
	if len(files) != 1 {
		l.bypassWhyOff = reason
		if reason == "" {
			reason = "the namespace init passed no seccomp listener"
		}
		l.log.Warn("--bypass=auto: the namespace's sockets stay inside and ports are relayed: " + reason)
		return nil
	}
	fd, err := syscall.Dup(int(files[0].Fd()))
	if err != nil {
		return fmt.Errorf("start bypass: %w", err)
	}
	syscall.CloseOnExec(fd)
	var st syscall.Stat_t
	if err := syscall.Stat("/proc/"+strconv.Itoa(l.childPID)+"/ns/net", &st); err != nil {
		syscall.Close(fd)
		return fmt.Errorf("start bypass: network namespace of the init: %w", err)
	}
	pol := bypass.Policy{Ignore: l.Bypass.Ignore, HostLoopback: l.Bypass.HostLoopback}
	for _, p := range []netip.Prefix{setup.Addr, setup.Addr6} {
		if p.IsValid() {
			pol.Self = append(pol.Self, p.Addr())
			pol.Ignore = append(pol.Ignore, p.Masked())
		}
	}
	for _, g := range []netip.Addr{setup.Gateway, setup.Gateway6} {
		if g.IsValid() {
			pol.Gateways = append(pol.Gateways, g)
		}
	}
	cfg := bypass.Config{
		Listener: seccomp.NewListener(fd),
		NetNS:    st.Ino,
		InitPID:  l.childPID,
		Policy:   pol,
		Logger:   l.log,
	}
	if l.portDrv != nil {
		cfg.Ports = bypassPorts{l.portDrv}
	}
	l.bypass, err = bypass.Start(cfg)
	if err != nil {
		cfg.Listener.Close()
		return err
	}
	return nil
}

// bypassInfo is the API's report: nil when --bypass was not asked for.
func (l *Launcher) bypassInfo() *api.BypassInfo {
	if !l.bypassOn() {
		return nil
	}
	return &api.BypassInfo{Mode: string(l.Bypass.Mode), Enabled: l.bypass != nil, Reason: l.bypassWhyOff}
}

// bypassPorts shows the port driver to the supervisor. Drivers that cannot
// step aside (slirp4netns's, whose listener is in its helper) publish
// nothing to bypass: their ports stay relayed.
type bypassPorts struct{ d port.Driver }

type stepper interface {
	StepAside(ctx context.Context, id int) error
	StepBack(ctx context.Context, id int) error
}

func (b bypassPorts) Published(ctx context.Context) []bypass.Published {
	if _, ok := b.d.(stepper); !ok {
		return nil
	}
	sts, err := b.d.List(ctx)
	if err != nil {
		return nil
	}
	out := make([]bypass.Published, 0, len(sts))
	for _, st := range sts {
		s := st.Spec
		p := bypass.Published{ID: st.ID, Transport: port.Transport(s.Proto), ParentPort: uint16(s.ParentPort), ChildPort: uint16(s.ChildPort)}
		p.ParentIP, p.ChildIP = s.ParentIP, s.ChildIP
		if p.Transport == "tcp" || p.Transport == "udp" {
			out = append(out, p)
		}
	}
	return out
}

func (b bypassPorts) StepAside(ctx context.Context, id int) error {
	return b.d.(stepper).StepAside(ctx, id)
}

func (b bypassPorts) StepBack(ctx context.Context, id int) error {
	return b.d.(stepper).StepBack(ctx, id)
}

func closeFiles(fs []*os.File) {
	for _, f := range fs {
		f.Close()
	}
}
