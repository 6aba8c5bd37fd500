// Package pasta is the pasta (passt) network driver: pasta joins the child's
// network namespace, creates and configures the tap device itself
// (--config-net) and, with the implicit port driver, forwards every port the
// child binds.
//
// RootlessKit lets pasta daemonize and never stops it, so pasta outlives it.
// Here pasta runs in the foreground as unroot's child (Pdeathsig, own process
// group, stopped and reaped by Close), and readiness comes from its PID file,
// which pasta writes only after the interface is configured: the file is
// /proc/self/fd/3, a pipe unroot reads. A pasta that dies is restarted.
//
// Unlike RootlessKit, unless implicit port forwarding needs it, pasta is not
// allowed to mirror the host's loopback ports into the namespace's 127.0.0.1
// (--tcp-ns/--udp-ns none): the host's loopback is reached at the gateway
// (10.0.2.2) unless --disable-host-loopback, exactly as with slirp4netns.
//
// pasta's options changed over the years (Debian 12 ships 2023_03_09), so
// the driver reads `pasta --help` once and adapts: a missing option the
// configuration needs is an error naming it, a missing nicety is a one-line
// warning.
package pasta

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/unroot/unroot/api"
	"github.com/unroot/unroot/network"
	"github.com/unroot/unroot/network/internal/helper"
)

// Options are the settings only this driver has; the zero value forwards
// no ports by itself.
type Options struct {
	// ImplicitPorts turns on pasta's own port forwarding (with
	// --port-driver=implicit): every port the child binds is forwarded
	// from the host.
	ImplicitPorts bool
}

// Driver is the pasta network driver. Start it once.
type Driver struct {
	cfg      network.Config
	path     string
	implicit bool
	probe    *helper.Probe
	log      *slog.Logger
	// version is what pasta --version prints; run only when the options
	// it lists leave its UDP forwarding in doubt.
	version func() string

	childIP, gateway, dns netip.Addr

	mu   sync.Mutex
	proc *helper.Kept
}

var (
	_ network.Driver     = (*Driver)(nil)
	_ network.Supervised = (*Driver)(nil)
)

// New validates cfg, finds the pasta binary and starts probing its options.
func New(cfg network.Config, o Options) (*Driver, error) {
	cfg, err := cfg.WithDefaults()
	if err != nil {
		return nil, err
	}
	if cfg.IPv6Only() && cfg.CIDR.Bits() != pastaPrefix6 {
		return nil, fmt.Errorf("cidr %s: pasta gives its IPv6 address a /%d, so use a /%d (like %s), or --net=netstack for other lengths", cfg.CIDR, pastaPrefix6, pastaPrefix6, netip.PrefixFrom(cfg.CIDR.Addr(), pastaPrefix6).Masked())
	}
	d := &Driver{cfg: cfg, log: cfg.Logger}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	d.implicit = o.ImplicitPorts
	d.path, err = lookPath(cfg.Binary)
	if err != nil {
		return nil, err
	}
	d.childIP, d.gateway, d.dns = network.Addresses(cfg.CIDR)
	d.probe = helper.ProbeHelp(d.path)
	d.version = func() string { return pastaVersion(d.path) }
	return d, nil
}

func lookPath(bin string) (string, error) {
	return helper.LookPath(helper.Binary{Name: "pasta", Flag: "--pasta-binary", Package: "passt", Other: "slirp4netns", OtherPackage: "slirp4netns", OtherNet: "slirp4netns"}, bin)
}

// PreTap asks the launcher to pre-create the tap. pasta starts only once
// the ids are mapped, and configures the device itself.
func (d *Driver) PreTap() network.PreTap { return network.PreTap{Name: d.cfg.IfName} }

// ExposesNamespacePorts reports implicit port forwarding: pasta publishes
// on the host every port bound inside, so a port that must stay inside
// (a reverse forward's) cannot.
func (d *Driver) ExposesNamespacePorts() bool { return d.implicit }

// Name returns "pasta".
func (d *Driver) Name() string { return "pasta" }

// Info describes the network for GET /v1/info.
func (d *Driver) Info() *api.NetworkDriverInfo {
	return &api.NetworkDriverInfo{Driver: "pasta", DNS: []string{d.dns.String()}, ChildIP: d.childIP.String(), IPv6: d.cfg.IPv6 || d.cfg.IPv6Only()}
}

// Start runs pasta against the child's network namespace and returns once
// pasta has configured the interface.
func (d *Driver) Start(ctx context.Context, c network.Child) (network.Setup, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.proc != nil {
		return network.Setup{}, errors.New("start pasta: already started")
	}
	flags, err := d.probe.Flags(ctx)
	if err != nil {
		return network.Setup{}, fmt.Errorf("start pasta: %w", err)
	}
	f, warnings, err := d.features(flags, c)
	if err != nil {
		return network.Setup{}, err
	}
	for _, w := range warnings {
		d.log.Warn(w)
	}
	args, err := buildArgs(d.cfg, c, f)
	if err != nil {
		return network.Setup{}, err
	}
	begin := time.Now()
	d.log.Debug("starting pasta", "path", d.path, "args", args)
	ho := helper.Options{Name: "pasta", Path: d.path, Args: args, Hint: hint, Logger: d.log}
	p, _, err := helper.StartOnTap(ctx, c, d.cfg.IfName, ho)
	if err != nil {
		return network.Setup{}, err
	}
	// A restarted pasta configures the interface again (--config-net) and
	// rescans ports, so losing it costs open connections, not the network.
	d.proc = helper.Keep(p, "pasta", func(ctx context.Context) (*helper.Process, error) { return helper.Start(ctx, ho) }, d.log)
	d.log.Debug("pasta ready", "pid", p.PID(), "took", time.Since(begin))
	s := network.Setup{
		IfName:             d.cfg.IfName,
		Addr:               netip.PrefixFrom(d.childIP, d.cfg.CIDR.Bits()),
		Gateway:            d.gateway,
		MTU:                d.cfg.MTU,
		ConfiguredByDriver: true,
	}
	if d.cfg.IPv6Only() {
		s.Addr, s.Gateway = netip.Prefix{}, netip.Addr{}
		s.Addr6, s.Gateway6 = netip.PrefixFrom(d.childIP, pastaPrefix6), d.gateway
	}
	if f.dnsForward {
		s.DNS = []netip.Addr{d.dns}
	}
	return s, nil
}

// Close stops pasta and waits for it.
func (d *Driver) Close() error {
	p := d.kept()
	if p == nil {
		return nil
	}
	return p.Close()
}

// hint turns pasta's stderr into a fix, when there is a known one.
func hint(stderr string) string {
	if strings.Contains(stderr, "No routable interface") || strings.Contains(stderr, "External interface not usable") {
		return "pasta copies the host's network settings and found no interface with a default route; use --net=slirp4netns"
	}
	return helper.TunHint(stderr)
}

// geteuid is a variable so tests can pretend to be root.
var geteuid = os.Geteuid

// features is what the installed pasta can do, of what this driver uses.
type features struct {
	stderr, dnsForward, hostLoToNsLo bool
	// implicit is Options.ImplicitPorts, carried here so buildArgs stays pure.
	implicit bool
	// nsNone: pasta can be told not to mirror the host's loopback ports.
	nsNone bool
	// stayRoot: unroot runs as real root, and pasta would otherwise drop to
	// "nobody", which may not join the child's namespaces.
	stayRoot bool
}

// features checks the probed options against the configuration: it fails
// when pasta lacks one the configuration cannot do without and returns a
// one-line warning for each nicety it lacks.
func (d *Driver) features(flags map[string]bool, c network.Child) (features, []string, error) {
	var missing []string
	need := func(flag string, needed bool) {
		if needed && !flags[flag] {
			missing = append(missing, flag)
		}
	}
	need("--foreground", true)
	need("--config-net", true)
	need("--ns-ifname", true)
	need("--pid", true)
	need("--address", true)
	need("--netmask", !d.cfg.IPv6Only())
	need("--gateway", true)
	need("--mtu", true)
	need("--tcp-ports", true)
	need("--udp-ports", true)
	need("--no-map-gw", d.cfg.DisableHostLoopback)
	need("--ipv4-only", !d.cfg.IPv6 && !d.cfg.IPv6Only())
	need("--ipv6-only", d.cfg.IPv6Only())
	need("--userns", c.Detached)
	need("--netns", c.Detached)
	if len(missing) > 0 {
		return features{}, nil, fmt.Errorf("start pasta: %s lacks %s: install a newer passt, or use --net=slirp4netns", d.path, strings.Join(missing, ", "))
	}
	f := features{
		stderr:       flags["--stderr"],
		dnsForward:   flags["--dns-forward"],
		hostLoToNsLo: flags["--host-lo-to-ns-lo"],
		implicit:     d.implicit,
		nsNone:       flags["--tcp-ns"] && flags["--udp-ns"],
		stayRoot:     flags["--runas"] && geteuid() == 0,
	}
	var warn []string
	if !f.dnsForward {
		warn = append(warn, fmt.Sprintf("pasta at %s lacks --dns-forward: DNS at %s will not answer; install a newer passt or use --net=slirp4netns", d.path, d.dns))
	}
	if d.implicit && d.cfg.DisableHostLoopback {
		warn = append(warn, "with --port-driver=implicit, pasta also mirrors ports bound on the host's 127.0.0.1 to 127.0.0.1 inside (its automatic forwarding needs --tcp-ns auto); --disable-host-loopback only closes the gateway address")
	}
	if d.implicit {
		if w := implicitUDPWarning(d.path, flags, d.version); w != "" {
			warn = append(warn, w)
		}
	}
	return f, warn, nil
}

// buildArgs is pasta's command line: RootlessKit's, in the foreground, with
// the PID file as the ready fd.
func buildArgs(cfg network.Config, c network.Child, f features) ([]string, error) {
	child, gw, dns := network.Addresses(cfg.CIDR)
	args := []string{"--foreground"}
	if f.stayRoot {
		args = append(args, "--runas=0:0")
	}
	if f.stderr {
		args = append(args, "--stderr")
	}
	args = append(args,
		"--ns-ifname="+cfg.IfName,
		"--mtu="+strconv.Itoa(cfg.MTU),
		"--config-net",
		"--address="+child.String(),
	)
	if !cfg.IPv6Only() {
		// pasta takes an IPv6 address with a /64 (pastaPrefix6) and no mask.
		args = append(args, "--netmask="+strconv.Itoa(cfg.CIDR.Bits()))
	}
	args = append(args, "--gateway="+gw.String())
	if f.dnsForward {
		args = append(args, "--dns-forward="+dns.String())
	}
	if cfg.DisableHostLoopback {
		args = append(args, "--no-map-gw")
	}
	// pasta's default --tcp-ns/--udp-ns auto mirrors every port bound on the
	// host's loopback into the namespace's 127.0.0.1: a second way to the
	// host's loopback that --disable-host-loopback would not close, ports the
	// command then cannot bind, and a slower start-up on a busy host.
	// The host's loopback stays reachable at the gateway, as with slirp4netns.
	// pasta 2023_03_09 only rescans the namespace for --tcp-ports=auto while
	// --tcp-ns is auto too, so implicit forwarding keeps pasta's default.
	if f.nsNone && !f.implicit {
		args = append(args, "--tcp-ns=none", "--udp-ns=none")
	}
	switch {
	case cfg.IPv6Only():
		args = append(args, "--ipv6-only")
	case !cfg.IPv6:
		args = append(args, "--ipv4-only")
	}
	if f.implicit {
		args = append(args, "--tcp-ports=auto", "--udp-ports=auto")
		// Newer pasta sends connections from the host's loopback through
		// the tap unless told otherwise; older pasta (without the option)
		// always splices them to the namespace's loopback, as this asks.
		if f.hostLoToNsLo {
			args = append(args, "--host-lo-to-ns-lo")
		}
	} else {
		args = append(args, "--tcp-ports=none", "--udp-ports=none")
	}
	args = append(args, "--pid=/proc/self/fd/"+strconv.Itoa(helper.ReadyFD))
	if c.Detached {
		if c.NetNS == "" || c.UserNS == "" {
			return nil, errors.New("start pasta: --detach-netns needs the netns and userns paths of the child")
		}
		return append(args, "--userns="+c.UserNS, "--netns="+c.NetNS), nil
	}
	if c.PID <= 0 {
		return nil, fmt.Errorf("start pasta: child pid %d is not a process", c.PID)
	}
	return append(args, strconv.Itoa(c.PID)), nil
}

// pastaPrefix6 is the prefix length pasta gives the IPv6 address it
// assigns (--address takes no length and --netmask is IPv4's).
const pastaPrefix6 = 64

// Health reports the helper's state (network.Supervised).
func (d *Driver) Health() api.NetworkHealth { return helper.HealthOf(d.Name(), d.kept()) }

// Failed is closed once the helper is lost for good (network.Supervised).
func (d *Driver) Failed() <-chan struct{} { return d.kept().Failed() }

// kept is the supervised helper, nil before Start.
func (d *Driver) kept() *helper.Kept {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.proc
}
