package doctor

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
)

const tunPath = "/dev/net/tun"

// needsTun reports whether the requested driver needs a tap device: every
// user-mode network does; host and none don't.
func (e *env) needsTun() bool { return e.net != "host" && e.net != "none" }

func checkTun(ctx context.Context, e *env) Result {
	sev := Fail
	if !e.needsTun() {
		sev = Warn
	}
	if err := openTun(tunPath); err != nil {
		en, _ := errnoOf(err)
		switch en {
		case syscall.ENOENT, syscall.ENODEV, syscall.ENXIO:
			return Result{Status: sev, Detail: tunPath + " is missing: the tun module is not loaded (or the container has no such device)",
				Fix: "sudo modprobe tun && echo tun | sudo tee /etc/modules-load.d/tun.conf\ninside a container: start it with --device /dev/net/tun"}
		case syscall.EACCES, syscall.EPERM:
			mode := ""
			if uid, m, err := ownerOf(tunPath); err == nil {
				mode = fmt.Sprintf(" (mode %04o, owner uid %d)", m.Perm(), uid)
			}
			return Result{Status: sev, Detail: fmt.Sprintf("cannot open %s: %v%s; slirp4netns, pasta and netstack need it", tunPath, en, mode),
				Fix: "sudo chmod 0666 " + tunPath + "\nto keep it across reboots: echo 'KERNEL==\"tun\", MODE=\"0666\"' | sudo tee /etc/udev/rules.d/90-unroot-tun.rules"}
		}
		return Result{Status: sev, Detail: fmt.Sprintf("cannot open %s: %v", tunPath, err), Fix: "sudo modprobe tun"}
	}
	ip, err := exec.LookPath("ip")
	if err != nil {
		return Result{Status: OK, Detail: tunPath + " opens (iproute2 missing, so creating a tap device in a namespace was not tried)"}
	}
	out, err := runInNS(ctx, syscall.CLONE_NEWUSER|syscall.CLONE_NEWNET, true, ip, "tuntap", "add", "dev", "doctor0", "mode", "tap")
	if err != nil {
		return Result{Status: sev, Detail: fmt.Sprintf("%s opens, but creating a tap device inside a user+net namespace failed: %v: %s", tunPath, err, out),
			Fix: "sudo modprobe tun; inside a container also pass --device /dev/net/tun"}
	}
	return Result{Status: OK, Detail: tunPath + " opens, and a tap device can be created inside a user+net namespace"}
}

var helperPkgs = map[string]map[string]string{
	"slirp4netns": {"debian": "slirp4netns", "fedora": "slirp4netns", "arch": "slirp4netns", "suse": "slirp4netns", "alpine": "slirp4netns"},
	"pasta":       {"debian": "passt", "fedora": "passt", "arch": "passt", "suse": "passt", "alpine": "passt"},
}

func helperVersion(ctx context.Context, bin string) (string, error) {
	p, err := exec.LookPath(bin)
	if err != nil {
		return "", err
	}
	out, err := runInNS(ctx, 0, false, p, "--version")
	if err != nil && out == "" {
		return "", fmt.Errorf("%s --version: %w", p, err)
	}
	return parseVersion(out), nil
}

func checkNetDrivers(ctx context.Context, e *env) Result {
	drivers := []string{"host", "none", "netstack (built in)"}
	var found []string
	var missing []string
	for _, h := range []string{"pasta", "slirp4netns"} {
		v, err := helperVersion(ctx, h)
		if err != nil {
			missing = append(missing, h)
			continue
		}
		found = append(found, h+" "+v)
		drivers = append(drivers, h)
	}
	detail := "network drivers available: " + strings.Join(drivers, ", ")
	if len(found) > 0 {
		detail += " (" + strings.Join(found, ", ") + ")"
	}
	for _, m := range missing {
		if e.net == m {
			return Result{Status: Fail,
				Detail: fmt.Sprintf("--net=%s was asked for, but %s is not found in PATH; %s", m, m, detail),
				Fix:    installHint(helperPkgs[m]) + "\n(or pick another driver: --net=" + map[string]string{"pasta": "slirp4netns", "slirp4netns": "pasta"}[m] + " or --net=netstack)"}
		}
	}
	if len(missing) > 0 {
		r := Result{Status: OK, Detail: detail + "; not found: " + strings.Join(missing, ", ")}
		if len(missing) == 2 {
			r.Status = Warn
			r.Fix = installHint(helperPkgs["pasta"]) + "   (pasta is the fastest user-mode network)"
		}
		return r
	}
	return Result{Status: OK, Detail: detail}
}

var iptablesPkgs = map[string]string{"debian": "iptables", "fedora": "iptables-nft", "arch": "iptables-nft", "suse": "iptables", "alpine": "iptables"}

func checkIPTables(ctx context.Context, e *env) Result {
	p, err := exec.LookPath("iptables")
	if err != nil {
		return Result{Status: Warn,
			Detail: "iptables is not installed: the builtin port driver cannot keep client addresses (connections appear to come from the gateway)",
			Fix:    installHint(iptablesPkgs)}
	}
	// The rule the launcher adds for transparent forwarding, in a throwaway
	// namespace: it proves the mangle table, addrtype and CONNMARK all load.
	out, err := runInNS(ctx, syscall.CLONE_NEWUSER|syscall.CLONE_NEWNET, true,
		p, "-w", "-t", "mangle", "-A", "OUTPUT", "-m", "addrtype", "!", "--src-type", "LOCAL", "-j", "CONNMARK", "--set-mark", "100")
	if err != nil {
		return Result{Status: Warn,
			Detail: fmt.Sprintf("iptables does not work inside a user+net namespace (%v: %s): client addresses cannot be kept", err, out),
			Fix:    "sudo modprobe -a iptable_mangle xt_connmark xt_addrtype   (or install the nft variant: " + installHint(iptablesPkgs) + ")"}
	}
	return Result{Status: OK, Detail: p + " works inside a user+net namespace (mangle, addrtype, CONNMARK): client addresses can be kept"}
}
