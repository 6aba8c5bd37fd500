package doctor

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
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

// sbinDirs are where iptables lives on distributions whose users' PATH
// lacks them (Debian), a common reason the launcher can't find it.
var sbinDirs = []string{"/usr/local/sbin", "/usr/sbin", "/sbin"}

// lookPathOrSbin finds bin in PATH, else in the sbin directories; inPath
// says which.
func lookPathOrSbin(bin string) (path string, inPath bool) {
	if p, err := exec.LookPath(bin); err == nil {
		return p, true
	}
	for _, d := range sbinDirs {
		if p, err := exec.LookPath(filepath.Join(d, bin)); err == nil {
			return p, false
		}
	}
	return "", false
}

func checkIPTables(ctx context.Context, e *env) Result {
	const lost = "the builtin port driver cannot keep client addresses for ports whose child IP is not loopback (connections appear to come from inside the namespace; ports to the child's loopback, the default, keep them without iptables)"
	v4, in4 := lookPathOrSbin("iptables")
	v6, in6 := lookPathOrSbin("ip6tables")
	switch {
	case v4 == "" || v6 == "":
		return Result{Status: Warn, Detail: "iptables/ip6tables is not installed: " + lost, Fix: installHint(iptablesPkgs)}
	case !in4 || !in6:
		return Result{Status: Warn,
			Detail: fmt.Sprintf("%s is installed but not in your PATH, where unroot looks for it: %s", v4, lost),
			Fix:    "export PATH=$PATH:/usr/sbin:/sbin   (in ~/.profile, or Environment=PATH=… in the unit)"}
	}
	// The rules the launcher adds for transparent forwarding, in a throwaway
	// namespace and with the namespace's own lock, as the launcher runs them:
	// they prove the mangle table, addrtype, connmark and MARK all load.
	script := `set -e
for t in "$1" "$2"; do
	XTABLES_LOCKFILE=/dev/null "$t" -w -t mangle -A OUTPUT -p tcp -m addrtype ! --src-type LOCAL -j CONNMARK --set-mark 100
	XTABLES_LOCKFILE=/dev/null "$t" -w -t mangle -A PREROUTING -p tcp -m connmark --mark 100 -j MARK --set-mark 100
done`
	out, err := runInNS(ctx, syscall.CLONE_NEWUSER|syscall.CLONE_NEWNET, true, "/bin/sh", "-c", script, "sh", v4, v6)
	if err != nil {
		return Result{Status: Warn,
			Detail: fmt.Sprintf("iptables does not work inside a user+net namespace (%v: %s): %s", err, out, lost),
			Fix:    "sudo modprobe -a iptable_mangle ip6table_mangle xt_connmark xt_addrtype xt_mark   (or install the nft variant: " + installHint(iptablesPkgs) + ")"}
	}
	return Result{Status: OK, Detail: v4 + " and " + v6 + " work inside a user+net namespace (mangle, addrtype, CONNMARK, MARK): client addresses can be kept for any child IP"}
}
