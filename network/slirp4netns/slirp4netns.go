// Package slirp4netns is the slirp4netns network driver: it attaches a
// slirp4netns process to the child's network namespace, where it creates the
// tap device, and tells the child how to address it (the child applies that
// with netlink; slirp4netns is not asked to configure anything).
//
// The helper is started with RootlessKit's command line, so the network a
// command sees is the same: 10.0.2.100/24 on tap0, gateway 10.0.2.2 (the
// host's loopback unless --disable-host-loopback), DNS 10.0.2.3. Unlike
// RootlessKit, the helper cannot outlive unroot (see network/internal/helper),
// a failed start says why, --help is read only when a start fails, the
// tap is pre-created persistent so stopping slirp4netns costs no kernel
// teardown, and a slirp4netns that dies is restarted on that same tap.
package slirp4netns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/unroot/unroot/api"
	"github.com/unroot/unroot/network"
	"github.com/unroot/unroot/network/internal/helper"
)

// Options are the settings only this driver has. The zero value runs
// slirp4netns without sandbox, seccomp filter or API socket, as
// RootlessKit does by default.
type Options struct {
	// Sandbox is --slirp4netns-sandbox: Auto means when supported and not
	// with a detached netns.
	Sandbox network.TriState
	// Seccomp is --slirp4netns-seccomp: Auto means when supported and the
	// kernel filters syscalls.
	Seccomp network.TriState
	// APISocket starts slirp4netns with its API socket, for the slirp4netns
	// port driver (which finds it through Driver.APISocket).
	APISocket bool
}

// slirp4netns's fixed IPv6 network (--enable-ipv6): fd00::/64 with the host
// at fd00::2 and DNS at fd00::3; the child takes ::100 like its IPv4 .100.
var (
	ipv6Child   = netip.MustParsePrefix("fd00::100/64")
	ipv6Gateway = netip.MustParseAddr("fd00::2")
)

// APISocketName is the API socket's name in the state directory (RootlessKit's).
const APISocketName = ".s4nn.sock"

// Driver is the slirp4netns network driver. Start it once.
type Driver struct {
	cfg       network.Config
	path      string
	sandbox   network.TriState
	seccomp   network.TriState
	apiSocket bool
	log       *slog.Logger

	childIP, gateway, dns netip.Addr

	mu       sync.Mutex
	proc     *helper.Kept
	sockPath string
}

var (
	_ network.Driver     = (*Driver)(nil)
	_ network.Supervised = (*Driver)(nil)
)

// New validates cfg, finds the slirp4netns binary and starts probing its
// features, so that a bad flag or a missing package fails before any
// namespace exists.
func New(cfg network.Config, o Options) (*Driver, error) {
	cfg, err := cfg.WithDefaults()
	if err != nil {
		return nil, err
	}
	if cfg.IPv6Only() {
		return nil, fmt.Errorf("slirp4netns cannot make an IPv6-only network (--cidr=%s): it always has IPv4, and its IPv6 (--ipv6) is fixed to fd00::/64; use --net=pasta or --net=netstack for an IPv6 --cidr", cfg.CIDR)
	}
	d := &Driver{cfg: cfg, log: cfg.Logger}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	if o.Sandbox > network.Auto || o.Seccomp > network.Auto || o.Sandbox < 0 || o.Seccomp < 0 {
		return nil, fmt.Errorf("slirp4netns: Options.Sandbox %d or Options.Seccomp %d is not a network.TriState", o.Sandbox, o.Seccomp)
	}
	d.sandbox, d.seccomp, d.apiSocket = o.Sandbox, o.Seccomp, o.APISocket
	d.path, err = lookPath(cfg.Binary)
	if err != nil {
		return nil, err
	}
	d.childIP, d.gateway, d.dns = network.Addresses(cfg.CIDR)
	return d, nil
}

func lookPath(bin string) (string, error) {
	return helper.LookPath(helper.Binary{Name: "slirp4netns", Flag: "--slirp4netns-binary", Package: "slirp4netns", Other: "pasta", OtherPackage: "passt", OtherNet: "pasta"}, bin)
}

// PreTap asks the launcher to pre-create the tap; slirp4netns joins the
// child's namespaces and attaches to it. It can start before the ids are
// mapped, except in its sandbox: that makes slirp4netns seteuid(0) in the
// child's user namespace, which fails ("parent failed") until uid 0 is
// mapped there. The addresses are fixed by the configuration, so the child
// can set them up meanwhile.
func (d *Driver) PreTap() network.PreTap {
	s := d.setup()
	return network.PreTap{Name: d.cfg.IfName, BeforeIDMap: d.sandbox == network.Off, Setup: &s}
}

// assumed are the options slirp4netns has had since 0.4.0 (2019), which
// every maintained distribution ships. Start assumes them rather than
// running --help first (an exec on every start), and probes only when
// slirp4netns fails, to retry with what it has or say what is missing.
var assumed = map[string]bool{
	"--ready-fd": true, "--exit-fd": true, "--mtu": true, "--cidr": true,
	"--disable-host-loopback": true, "--netns-type": true, "--userns-path": true,
	"--api-socket": true, "--enable-sandbox": true, "--enable-seccomp": true, "--enable-ipv6": true,
}

// Name returns "slirp4netns".
func (d *Driver) Name() string { return "slirp4netns" }

// Info describes the network for GET /v1/info.
func (d *Driver) Info() *api.NetworkDriverInfo {
	return &api.NetworkDriverInfo{
		Driver:  "slirp4netns",
		DNS:     addrStrings(d.dnsServers()),
		ChildIP: d.childIP.String(),
		IPv6:    d.cfg.IPv6,
	}
}

func (d *Driver) dnsServers() []netip.Addr {
	dns := []netip.Addr{d.dns}
	if d.cfg.IPv6 {
		dns = append(dns, network.DNS6)
	}
	return dns
}

func addrStrings(as []netip.Addr) []string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return s
}

// Start runs slirp4netns against the child's network namespace and returns
// once the tap device exists (and the API socket listens, if asked for).
func (d *Driver) Start(ctx context.Context, c network.Child) (network.Setup, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.proc != nil {
		return network.Setup{}, errors.New("start slirp4netns: already started")
	}
	s, err := d.start(ctx, c, assumed)
	if err == nil {
		return s, nil
	}
	if ctx.Err() != nil {
		return network.Setup{}, err
	}
	// An older slirp4netns rejects an option it lacks: find out what it
	// has, then retry without what is optional or name what is missing.
	flags, perr := helper.ProbeHelp(d.path).Flags(ctx)
	if perr != nil {
		if ctx.Err() != nil {
			return network.Setup{}, err
		}
		// It failed and cannot say what it supports: both halves matter.
		return network.Setup{}, fmt.Errorf("%w; %w", err, perr)
	}
	if hasAll(flags, assumed) {
		return network.Setup{}, err
	}
	opts, rerr := d.resolve(flags, c)
	if rerr != nil {
		return network.Setup{}, rerr
	}
	if o, _ := d.resolve(assumed, c); o == opts {
		return network.Setup{}, err
	}
	d.log.Debug("slirp4netns lacks some options; retrying without them", "err", err)
	return d.start(ctx, c, flags)
}

func hasAll(have, want map[string]bool) bool {
	for f := range want {
		if !have[f] {
			return false
		}
	}
	return true
}

// start runs slirp4netns with the options flags says it has.
func (d *Driver) start(ctx context.Context, c network.Child, flags map[string]bool) (network.Setup, error) {
	opts, err := d.resolve(flags, c)
	if err != nil {
		return network.Setup{}, err
	}
	if d.apiSocket {
		if c.StateDir == "" {
			return network.Setup{}, errors.New("start slirp4netns: the API socket needs a state directory")
		}
		opts.apiSocket = filepath.Join(c.StateDir, APISocketName)
		if len(opts.apiSocket) >= 108 {
			return network.Setup{}, fmt.Errorf("start slirp4netns: API socket path %s is longer than a unix socket allows (107 bytes): use a shorter --state-dir", opts.apiSocket)
		}
		_ = os.Remove(opts.apiSocket)
	}
	args, err := buildArgs(d.cfg, c, opts)
	if err != nil {
		return network.Setup{}, err
	}
	begin := time.Now()
	d.log.Debug("starting slirp4netns", "path", d.path, "args", args)
	ho := helper.Options{
		Name:   "slirp4netns",
		Path:   d.path,
		Args:   args,
		ExitFD: opts.exitFD,
		Hint:   hint,
		Logger: d.log,
	}
	p, persistent, err := helper.StartOnTap(ctx, c, d.cfg.IfName, ho)
	if err != nil {
		return network.Setup{}, err
	}
	if opts.apiSocket != "" {
		// The port driver dials the socket as soon as Start returns; 1.2.0
		// binds it before signalling ready, but nothing promises that order.
		if err := waitSocket(ctx, p, opts.apiSocket); err != nil {
			p.Close()
			return network.Setup{}, err
		}
	}
	// A restarted slirp4netns finds the child's addresses and routes still
	// on the persistent tap. Ports published through its API are published
	// again by the port driver (OnRestart) before it counts as up. Without
	// a persistent tap (a helper that made its own) it cannot be restarted,
	// and its loss is final.
	var restart func(context.Context) (*helper.Process, error)
	if persistent {
		restart = func(ctx context.Context) (*helper.Process, error) {
			if opts.apiSocket != "" {
				_ = os.Remove(opts.apiSocket) // the dead one's
			}
			np, err := helper.Start(ctx, ho)
			if err == nil && opts.apiSocket != "" {
				if err = waitSocket(ctx, np, opts.apiSocket); err != nil {
					np.Close()
				}
			}
			return np, err
		}
	}
	d.proc, d.sockPath = helper.Keep(p, "slirp4netns", restart, d.log), opts.apiSocket
	d.log.Debug("slirp4netns ready", "pid", p.PID(), "took", time.Since(begin), "persistent-tap", persistent)

	return d.setup(), nil
}

// OnRestart adds a step that runs after each restart of slirp4netns, before
// it counts as up again: the slirp4netns port driver publishes its ports
// there again. A step that fails fails the restart. Call it after Start.
func (d *Driver) OnRestart(f func(context.Context) error) {
	p := d.kept()
	if p != nil {
		p.OnRestart(f)
	}
}

// APISocket is the path of slirp4netns's API socket once Start has
// returned, "" without Options.APISocket.
func (d *Driver) APISocket() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.sockPath
}

// setup is how the child addresses the tap, which the configuration alone
// decides.
func (d *Driver) setup() network.Setup {
	s := network.Setup{
		IfName:  d.cfg.IfName,
		Addr:    netip.PrefixFrom(d.childIP, d.cfg.CIDR.Bits()),
		Gateway: d.gateway,
		DNS:     d.dnsServers(),
		MTU:     d.cfg.MTU,
	}
	if d.cfg.IPv6 {
		// slirp4netns also advertises fd00::/64, but SLAAC (with duplicate
		// address detection) takes seconds after the link is up; a static
		// address (set without DAD by the child) works at once.
		s.Addr6, s.Gateway6 = ipv6Child, ipv6Gateway
	}
	return s
}

func waitSocket(ctx context.Context, p *helper.Process, path string) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		if fi, err := os.Stat(path); err == nil && fi.Mode().Type() == os.ModeSocket {
			return nil
		}
		select {
		case <-p.Done():
			return fmt.Errorf("start slirp4netns: exited before its API socket %s appeared: %s", path, p.Output())
		case <-ctx.Done():
			return fmt.Errorf("start slirp4netns: API socket %s: %w", path, ctx.Err())
		case <-time.After(time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("start slirp4netns: API socket %s did not appear within 5s: %s", path, p.Output())
		}
	}
}

// hint turns slirp4netns's stderr into a fix, when there is a known one.
func hint(stderr string) string {
	return helper.TunHint(stderr)
}

// Close stops slirp4netns and waits for it, then removes its API socket.
func (d *Driver) Close() error {
	d.mu.Lock()
	p, sock := d.proc, d.sockPath
	d.mu.Unlock()
	if p == nil {
		return nil
	}
	err := p.Close()
	if sock != "" {
		_ = os.Remove(sock)
	}
	return err
}

// startOpts is what Start decided from the config, the child and the probe.
type startOpts struct {
	sandbox, seccomp, exitFD bool
	apiSocket                string
}

// seccompFilter tells whether the kernel can filter syscalls (what
// --enable-seccomp needs); a variable so tests can pretend either way.
var seccompFilter = func() bool {
	_, err := os.Stat("/proc/sys/kernel/seccomp/actions_avail")
	return err == nil
}

// resolve applies RootlessKit's rules for sandbox and seccomp and checks that
// the installed slirp4netns has what the configuration needs.
func (d *Driver) resolve(flags map[string]bool, c network.Child) (startOpts, error) {
	var o startOpts
	need := func(flag, why string) error {
		if flags[flag] {
			return nil
		}
		return fmt.Errorf("start slirp4netns: %s does not support %s, needed %s: install slirp4netns 1.0 or newer", d.path, flag, why)
	}
	if c.Detached {
		if err := need("--netns-type", "for --detach-netns"); err != nil {
			return o, err
		}
		if err := need("--userns-path", "for --detach-netns"); err != nil {
			return o, err
		}
	}
	if d.cfg.DisableHostLoopback {
		if err := need("--disable-host-loopback", "for --disable-host-loopback"); err != nil {
			return o, err
		}
	}
	if d.cfg.IPv6 {
		if err := need("--enable-ipv6", "for --ipv6"); err != nil {
			return o, err
		}
	}
	if d.cfg.CIDR != network.DefaultCIDR {
		if err := need("--cidr", "for --cidr"); err != nil {
			return o, err
		}
	}
	if d.apiSocket {
		if err := need("--api-socket", "for the slirp4netns port driver"); err != nil {
			return o, err
		}
	}
	switch d.sandbox {
	case network.On:
		if c.Detached {
			return o, errors.New("--slirp4netns-sandbox=true cannot be used with --detach-netns: use --slirp4netns-sandbox=auto or false")
		}
		if err := need("--enable-sandbox", "for --slirp4netns-sandbox=true"); err != nil {
			return o, err
		}
		o.sandbox = true
	case network.Auto:
		o.sandbox = flags["--enable-sandbox"] && !c.Detached
	}
	switch d.seccomp {
	case network.On:
		if err := need("--enable-seccomp", "for --slirp4netns-seccomp=true"); err != nil {
			return o, err
		}
		o.seccomp = true
	case network.Auto:
		o.seccomp = flags["--enable-seccomp"] && seccompFilter()
	}
	o.exitFD = flags["--exit-fd"]
	return o, nil
}

// buildArgs is slirp4netns's command line, RootlessKit's plus the exit fd.
func buildArgs(cfg network.Config, c network.Child, o startOpts) ([]string, error) {
	args := []string{"--mtu", strconv.Itoa(cfg.MTU), "--ready-fd", strconv.Itoa(helper.ReadyFD)}
	if o.exitFD {
		args = append(args, "--exit-fd", strconv.Itoa(helper.ExitFD))
	}
	if cfg.DisableHostLoopback {
		args = append(args, "--disable-host-loopback")
	}
	if cfg.CIDR != network.DefaultCIDR {
		args = append(args, "--cidr", cfg.CIDR.String())
	}
	if o.apiSocket != "" {
		args = append(args, "--api-socket", o.apiSocket)
	}
	if o.sandbox {
		args = append(args, "--enable-sandbox")
	}
	if o.seccomp {
		args = append(args, "--enable-seccomp")
	}
	if cfg.IPv6 {
		args = append(args, "--enable-ipv6")
	}
	if c.Detached {
		if c.NetNS == "" || c.UserNS == "" {
			return nil, errors.New("start slirp4netns: --detach-netns needs the netns and userns paths of the child")
		}
		args = append(args, "--userns-path="+c.UserNS, "--netns-type=path", c.NetNS)
	} else {
		if c.PID <= 0 {
			return nil, fmt.Errorf("start slirp4netns: child pid %d is not a process", c.PID)
		}
		args = append(args, strconv.Itoa(c.PID))
	}
	return slices.Clip(append(args, cfg.IfName)), nil
}

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
