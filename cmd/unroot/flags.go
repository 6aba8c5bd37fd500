package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/pflag"
)

// personality selects defaults and rules: RootlessKit's exactly, or the
// friendlier ones of `unroot run`.
type personality int

const (
	asRootlesskit personality = iota
	asUnroot
)

// opts holds every launcher flag; names and defaults follow RootlessKit.
type opts struct {
	debug       bool
	printSemver string
	stateDir    string

	net                 string
	mtu                 int
	cidr                string
	cidrSet             bool // --cidr was given, even empty
	ifname              string
	disableHostLoopback bool
	ipv6                bool
	detachNetNS         bool
	pastaBinary         string
	pestoBinary         string
	slirpBinary         string
	slirpSandbox        string
	slirpSeccomp        string
	vpnkitBinary        string
	lxcUserNicBinary    string
	lxcUserNicBridge    string

	copyUp      []string
	copyUpMode  string
	propagation string

	portDriver          string
	publish             []string
	forward             []string // unroot only: --forward (reverse forwarding)
	sourceIPTransparent bool
	// sourceIPTransparentBackend: auto, nft or iptables (RootlessKit 3.3).
	sourceIPTransparentBackend string
	// unroot only: keep UDP clients' addresses too (see port/builtin.Options).
	sourceIPTransparentUDP bool

	pidns, cgroupns, utsns, ipcns bool
	reaper                        string
	evacuateCgroup2               string

	subidSource string

	ready string // unroot only: who sends systemd READY=1 (internal/notify)

	bypass bypassOpts

	onNetworkFailure string
}

const categoryKey = "category"

// Categories in the order --help prints them.
var categories = []string{"Misc", "State", "Network", "Mount", "Port", "Process", "SubID"}

func register(fs *pflag.FlagSet, o *opts, p personality) {
	add := func(cat, name string) { fs.SetAnnotation(name, categoryKey, []string{cat}) }
	def := func(rk, un string) string {
		if p == asUnroot {
			return un
		}
		return rk
	}
	fs.BoolVar(&o.debug, "debug", false, "debug mode")
	add("Misc", "debug")
	if p == asRootlesskit {
		fs.StringVar(&o.printSemver, "print-semver", "", "print a version component as an integer value (major, minor, patch)")
		add("Misc", "print-semver")
	}
	fs.StringVar(&o.stateDir, "state-dir", "", "state directory (default: a new $TMPDIR/rootlesskitNNN, removed at exit)")
	add("State", "state-dir")

	fs.StringVar(&o.net, "net", def("host", "auto"), "network driver [host, none, pasta, slirp4netns, netstack"+map[bool]string{true: ", auto (pasta, then slirp4netns, then netstack)", false: ""}[p == asUnroot]+"]")
	fs.IntVar(&o.mtu, "mtu", 0, "MTU for non-host network (default: 65520 for pasta, slirp4netns and netstack)")
	fs.Var(&setString{v: &o.cidr, set: &o.cidrSet}, "cidr", "CIDR for pasta, slirp4netns and netstack networks (default: 10.0.2.0/24); an IPv6 one alone (like fd00:1::/64) makes the network IPv6-only (pasta, netstack)")
	fs.StringVar(&o.ifname, "ifname", "", "network interface name (default: tap0)")
	fs.BoolVar(&o.disableHostLoopback, "disable-host-loopback", p == asUnroot, "prohibit connecting to 127.0.0.1:* on the host namespace")
	fs.BoolVar(&o.ipv6, "ipv6", false, "enable IPv6 routing; for pasta, slirp4netns and netstack (experimental)")
	fs.BoolVar(&o.detachNetNS, "detach-netns", false, "detach network namespaces: the command stays in the host network namespace and $ROOTLESSKIT_STATE_DIR/netns holds the new one")
	fs.StringVar(&o.pastaBinary, "pasta-binary", "pasta", "path of pasta binary for --net=pasta")
	fs.StringVar(&o.pestoBinary, "pesto-binary", "pesto", "path of pesto binary for --port-driver=pesto (not supported by unroot)")
	fs.StringVar(&o.slirpBinary, "slirp4netns-binary", "slirp4netns", "path of slirp4netns binary for --net=slirp4netns")
	fs.StringVar(&o.slirpSandbox, "slirp4netns-sandbox", "false", "enable slirp4netns sandbox (experimental) [auto, true, false] (the default is planned to be \"auto\" in future)")
	fs.StringVar(&o.slirpSeccomp, "slirp4netns-seccomp", "false", "enable slirp4netns seccomp (experimental) [auto, true, false] (the default is planned to be \"auto\" in future)")
	fs.StringVar(&o.vpnkitBinary, "vpnkit-binary", "vpnkit", "path of VPNKit binary for --net=vpnkit (not supported by unroot)")
	fs.StringVar(&o.lxcUserNicBinary, "lxc-user-nic-binary", "/usr/lib/x86_64-linux-gnu/lxc/lxc-user-nic", "path of lxc-user-nic binary for --net=lxc-user-nic (not supported by unroot)")
	fs.StringVar(&o.lxcUserNicBridge, "lxc-user-nic-bridge", "lxcbr0", "lxc-user-nic bridge name (not supported by unroot)")
	for _, n := range []string{"net", "mtu", "cidr", "ifname", "disable-host-loopback", "ipv6", "detach-netns", "pasta-binary", "pesto-binary", "slirp4netns-binary", "slirp4netns-sandbox", "slirp4netns-seccomp", "vpnkit-binary", "lxc-user-nic-binary", "lxc-user-nic-bridge"} {
		add("Network", n)
	}
	if p == asUnroot {
		// Accepted for RootlessKit command lines, but there is no such driver.
		for _, n := range []string{"vpnkit-binary", "lxc-user-nic-binary", "lxc-user-nic-bridge", "pesto-binary"} {
			fs.MarkHidden(n)
		}
	}

	var copyUpDef []string
	if p == asUnroot {
		copyUpDef = []string{"/etc"}
	}
	fs.StringSliceVar(&o.copyUp, "copy-up", copyUpDef, "mount a filesystem and copy-up the contents, e.g. \"--copy-up=/etc\" (typically required for non-host network)")
	fs.StringVar(&o.copyUpMode, "copy-up-mode", "tmpfs+symlink", "copy-up mode [tmpfs+symlink]")
	fs.StringVar(&o.propagation, "propagation", "rprivate", "mount propagation [rprivate, rslave, rshared, private, slave, shared]")
	for _, n := range []string{"copy-up", "copy-up-mode", "propagation"} {
		add("Mount", n)
	}

	fs.StringVar(&o.portDriver, "port-driver", def("none", "builtin"), "port driver for non-host network [none, implicit (for pasta), builtin, slirp4netns]")
	fs.VarP((*specList)(&o.publish), "publish", "p", "publish ports, e.g. \"127.0.0.1:8080:80/tcp\""+map[bool]string{true: " or \"8080:80\"", false: " (ignored for --port-driver=implicit)"}[p == asUnroot])
	fs.BoolVar(&o.sourceIPTransparent, "source-ip-transparent", true, "enable source IP transparency for the builtin port driver (TCP only)")
	fs.StringVar(&o.sourceIPTransparentBackend, "source-ip-transparent-backend", "auto", "firewall backend for --source-ip-transparent (builtin port driver) [auto, nft, iptables]")
	for _, n := range []string{"port-driver", "publish", "source-ip-transparent", "source-ip-transparent-backend"} {
		add("Port", n)
	}

	fs.BoolVar(&o.pidns, "pidns", p == asUnroot, "create a PID namespace")
	fs.BoolVar(&o.cgroupns, "cgroupns", false, "create a cgroup namespace")
	fs.BoolVar(&o.utsns, "utsns", false, "create a UTS namespace")
	fs.BoolVar(&o.ipcns, "ipcns", false, "create an IPC namespace")
	fs.StringVar(&o.reaper, "reaper", "auto", "enable process reaper (requires --pidns) [auto, true, false]")
	fs.StringVar(&o.evacuateCgroup2, "evacuate-cgroup2", "", "evacuate processes into the specified subgroup (requires --pidns and --cgroupns)")
	for _, n := range []string{"pidns", "cgroupns", "utsns", "ipcns", "reaper", "evacuate-cgroup2"} {
		add("Process", n)
	}
	fs.StringVar(&o.onNetworkFailure, "on-network-failure", "exit", "when the network helper (slirp4netns, pasta) dies and cannot be restarted: exit (stop the command, exit 1) or keep (run on without network) [exit, keep]")
	registerBypass(fs, &o.bypass, p)
	registerForward(fs, &o.forward, p)
	fs.StringVar(&o.subidSource, "subid-source", "auto", "source of the subids [auto, dynamic (getsubids), static (/etc/subuid)]")
	add("SubID", "subid-source")
	if p == asUnroot {
		fs.StringVar(&o.ready, "ready", "notify", "under a Type=notify systemd unit, who sends READY=1: notify (the command, relayed) or ports (unroot, once ports are published)")
		add("Misc", "ready")
		fs.BoolVar(&o.sourceIPTransparentUDP, "source-ip-transparent-udp", false, "keep the client address for UDP too (builtin port driver, loopback child IP); the server must reply from the address it was reached on (bound to it, or IP_PKTINFO), see docs/ports.md")
		add("Port", "source-ip-transparent-udp")
	}
}

// setString is a string flag that also records that it was given, so
// "--cidr=" can be told from no --cidr.
type setString struct {
	v   *string
	set *bool
}

func (s *setString) String() string {
	if s.v == nil {
		return ""
	}
	return *s.v
}
func (s *setString) Set(v string) error { *s.v, *s.set = v, true; return nil }
func (s *setString) Type() string       { return "string" }

// normalize rewrites RootlessKit's (Go flag package) grammar into pflag's:
// a single-dash long flag ("-pidns", "-state-dir=x") becomes "--pidns".
// It stops at the command, so the command's own arguments pass unchanged.
func normalize(fs *pflag.FlagSet, args []string) []string {
	out := slices.Clone(args)
	for i := 0; i < len(out); i++ {
		a := out[i]
		if a == "--" || a == "-" || !strings.HasPrefix(a, "-") {
			return out
		}
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "--") {
			if f := fs.Lookup(name); f != nil && len(name) > 1 {
				out[i] = "-" + a
			} else if len(name) == 1 {
				f = fs.ShorthandLookup(name)
				if f != nil && f.NoOptDefVal == "" && !hasValue && len(strings.TrimLeft(a, "-")) == 1 {
					i++ // the value follows
				}
				continue
			} else {
				continue
			}
		}
		if f := fs.Lookup(name); f != nil && f.NoOptDefVal == "" && !hasValue {
			i++ // "--flag value"
		}
	}
	return out
}

// usageError is a command-line mistake; printed as RootlessKit's
// "Incorrect Usage" line.
type usageError struct{ msg string }

func (e usageError) Error() string { return "Incorrect Usage: " + e.msg }

// parse parses launcher flags up to the command, RootlessKit style.
func parse(fs *pflag.FlagSet, args []string) ([]string, error) {
	fs.SetInterspersed(false)
	fs.Usage = func() {}
	if err := fs.Parse(normalize(fs, args)); err != nil {
		msg := err.Error()
		if rest, ok := strings.CutPrefix(msg, "unknown flag: "); ok {
			msg = "flag provided but not defined: " + rest
		} else if rest, ok := strings.CutPrefix(msg, "unknown shorthand flag: "); ok {
			msg = "flag provided but not defined: " + rest
		}
		return nil, usageError{msg}
	}
	return fs.Args(), nil
}

// formatHelp lists every flag grouped by category, as RootlessKit's help
// does (containerd-rootless.sh greps it for --detach-netns).
func formatHelp(fs *pflag.FlagSet) string {
	var b strings.Builder
	for _, cat := range categories {
		var lines []string
		fs.VisitAll(func(f *pflag.Flag) {
			if c := f.Annotations[categoryKey]; len(c) == 0 || c[0] != cat || f.Hidden {
				return
			}
			name := "--" + f.Name
			if f.Shorthand != "" {
				name += ", -" + f.Shorthand
			}
			if f.Value.Type() != "bool" {
				name += " value"
			}
			line := fmt.Sprintf("   %-36s %s", name, f.Usage)
			switch {
			case f.Value.Type() == "bool":
				line += fmt.Sprintf(" (default: %s)", f.DefValue)
			case f.DefValue != "" && f.DefValue != "[]" && f.DefValue != "0":
				line += fmt.Sprintf(" (default: %q)", strings.Trim(f.DefValue, "[]"))
			}
			lines = append(lines, line)
		})
		if len(lines) == 0 {
			continue
		}
		slices.Sort(lines)
		fmt.Fprintf(&b, "\n   %s:\n\n", cat)
		b.WriteString(strings.Join(lines, "\n") + "\n")
	}
	return b.String()
}

// specList is a comma-separated, repeatable flag like pflag's StringSlice, but
// it keeps empty items (`-p ""`, `-p 80:80,`) so that they are refused rather
// than silently publish nothing; RootlessKit's urfave/cli splits the same way.
type specList []string

func (l *specList) String() string { return "[" + strings.Join(*l, ",") + "]" }
func (l *specList) Type() string   { return "stringSlice" }
func (l *specList) Set(v string) error {
	*l = append(*l, strings.Split(v, ",")...)
	return nil
}
