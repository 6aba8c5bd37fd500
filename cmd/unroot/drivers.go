package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"strings"

	"github.com/unroot/unroot/network"
	"github.com/unroot/unroot/network/host"
	"github.com/unroot/unroot/network/pasta"
	"github.com/unroot/unroot/network/slirp4netns"
	"github.com/unroot/unroot/port"
	"github.com/unroot/unroot/port/builtin"
	portslirp "github.com/unroot/unroot/port/slirp4netns"
)

// netDrivers builds each network driver from the flags. host and none take
// no options (their flags are checked in checkNetFlags).
var netDrivers = map[string]func(cfg network.Config, o *opts) (network.Driver, error){
	"host": func(network.Config, *opts) (network.Driver, error) { return host.New(), nil },
	"none": func(network.Config, *opts) (network.Driver, error) { return host.None(), nil },
	"slirp4netns": func(cfg network.Config, o *opts) (network.Driver, error) {
		cfg.Binary = o.slirpBinary
		if cfg.Binary == "slirp4netns" {
			cfg.Binary = ""
		}
		var so slirp4netns.Options
		var err error
		if so.Sandbox, err = network.ParseTriState("--slirp4netns-sandbox", o.slirpSandbox); err != nil {
			return nil, err
		}
		if so.Seccomp, err = network.ParseTriState("--slirp4netns-seccomp", o.slirpSeccomp); err != nil {
			return nil, err
		}
		so.APISocket = o.portDriver == "slirp4netns"
		return slirp4netns.New(cfg, so)
	},
	"pasta": func(cfg network.Config, o *opts) (network.Driver, error) {
		cfg.Binary = o.pastaBinary
		if cfg.Binary == "pasta" {
			cfg.Binary = ""
		}
		return pasta.New(cfg, pasta.Options{ImplicitPorts: o.portDriver == "implicit"})
	},
}

// notSupported are RootlessKit drivers unroot does not carry.
var notSupported = map[string]bool{"vpnkit": true, "lxc-user-nic": true, "gvisor-tap-vsock": true}

// resolveAuto picks the network for --net=auto: pasta, then slirp4netns,
// then the embedded netstack, which needs no helper.
func resolveAuto(o *opts) string {
	if _, err := exec.LookPath(o.pastaBinary); err == nil {
		return "pasta"
	}
	if _, err := exec.LookPath(o.slirpBinary); err == nil {
		return "slirp4netns"
	}
	return "netstack"
}

// buildNetwork validates the network flags and makes the driver.
func buildNetwork(o *opts, p personality, log *slog.Logger) (network.Driver, error) {
	name := o.net
	if name == "auto" && p == asUnroot {
		name = resolveAuto(o)
		log.Debug("--net=auto chose " + name)
	}
	if notSupported[name] {
		return nil, fmt.Errorf("network driver %s is not supported by unroot: use --net=slirp4netns, pasta or netstack", name)
	}
	mk, ok := netDrivers[name]
	if !ok {
		return nil, fmt.Errorf("unknown network driver %q: use host, none, slirp4netns, pasta or netstack", o.net)
	}
	if err := network.ValidateMTU(o.mtu); err != nil {
		return nil, err
	}
	if name == "host" || name == "none" {
		if o.cidr != "" || (o.cidrSet && p == asUnroot) {
			return nil, fmt.Errorf("--cidr cannot be used with --net=%s: it sets the address of a user-mode network (slirp4netns, pasta, netstack)", name)
		}
		if o.ifname != "" {
			return nil, fmt.Errorf("--ifname cannot be used with --net=%s: there is no network device to name", name)
		}
		if o.mtu != 0 {
			log.Warn(fmt.Sprintf("--mtu=%d is ignored with --net=%s", o.mtu, name))
		}
		if o.ipv6 {
			log.Warn(fmt.Sprintf("--ipv6 is ignored with --net=%s", name))
		}
		d, _ := mk(network.Config{}, o)
		return d, nil
	}
	cfg := network.Config{MTU: o.mtu, IfName: o.ifname, DisableHostLoopback: o.disableHostLoopback, IPv6: o.ipv6, Logger: log.With("component", "network")}
	// RootlessKit takes an empty --cidr= as the default; unroot run says
	// it is empty.
	if o.cidr != "" || (o.cidrSet && p == asUnroot) {
		c, err := network.ParseCIDR(o.cidr)
		if err != nil {
			return nil, err
		}
		cfg.CIDR = c
	}
	if o.ifname != "" {
		if err := network.ValidateIfName(o.ifname); err != nil {
			return nil, err
		}
	}
	d, err := mk(cfg, o)
	if err == nil && !o.disableHostLoopback && p == asRootlesskit {
		log.Warn("specifying --disable-host-loopback is highly recommended to prohibit connecting to 127.0.0.1:* on the host namespace (requires pasta, slirp4netns, or netstack)")
	}
	return d, err
}

// buildPorts validates the port flags against the network and makes the
// port driver factory and the specs to publish. RootlessKit's combination
// rules hold for the rootlesskit personality; unroot run also allows the
// builtin driver with pasta and netstack.
func buildPorts(o *opts, netName string, p personality, log *slog.Logger) (port.Factory, []port.Spec, error) {
	var specs []port.Spec
	for _, s := range o.publish {
		if strings.TrimSpace(s) == "" {
			return nil, nil, errors.New("--publish: empty value (an unset variable or a stray comma?): give a port like 127.0.0.1:8080:80/tcp, or leave out -p")
		}
		sp, err := port.ParseSpec(s, port.ParseOptions{Lenient: p == asUnroot})
		if err != nil {
			return nil, nil, fmt.Errorf("--publish: %w", err)
		}
		specs = append(specs, sp)
	}
	switch o.portDriver {
	case "pasta":
		return nil, nil, errors.New(`unknown port driver "pasta": did you mean "pesto"?`)
	case "pesto":
		return nil, nil, pestoDriver(o, netName)
	case "none", "":
		if len(specs) > 0 {
			return nil, nil, errors.New("--publish needs a port driver: add --port-driver=builtin")
		}
		return nil, nil, nil
	case "implicit":
		if netName != "pasta" {
			return nil, nil, fmt.Errorf("--port-driver=implicit requires --net=pasta, not --net=%s", netName)
		}
		if len(specs) > 0 {
			log.Warn("--publish is ignored with --port-driver=implicit: pasta forwards every port the command binds")
		}
		return nil, nil, nil
	case "builtin":
		if netName == "host" {
			return nil, nil, errors.New("port driver requires non-host network: use --net=slirp4netns, pasta, netstack or none, or --port-driver=none")
		}
		if p == asRootlesskit && netName == "pasta" {
			return nil, nil, errors.New(`network "pasta" requires port driver "none" or "implicit" or "pesto"`) // RootlessKit 3.3's words
		}
		firewall, err := transparentBackend(o, log)
		if err != nil {
			return nil, nil, err
		}
		opt := builtin.DefaultOptions
		opt.SourceIPTransparent = o.sourceIPTransparent
		opt.Firewall = firewall
		opt.SourceIPTransparentUDP = o.sourceIPTransparentUDP
		return builtin.NewFactory(opt), specs, nil
	case "slirp4netns":
		if netName != "slirp4netns" {
			return nil, nil, fmt.Errorf("--port-driver=slirp4netns requires --net=slirp4netns, not --net=%s", netName)
		}
		return portslirp.New, specs, nil
	case "gvisor-tap-vsock":
		return nil, nil, errors.New("port driver gvisor-tap-vsock is not supported by unroot: use --port-driver=builtin")
	}
	return nil, nil, fmt.Errorf("unknown port driver %q: use none, builtin, slirp4netns or implicit", o.portDriver)
}

func netNameOf(d network.Driver) string {
	if d == nil {
		return "host"
	}
	return strings.ToLower(d.Name())
}
