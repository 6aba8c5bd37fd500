package main

// bypass4netns (rootless-containers/bypass4netns) measured as its README
// runs it ("Hard way"): `bypass4netns --ignore=127.0.0.0/8,10.0.0.0/8,auto
// -p=HOST:CONTAINER` on the host as the user, and a rootless container whose
// seccomp profile is the README's test/seccomp.json.sh (SCMP_ACT_NOTIFY on
// bind, close, connect, setsockopt, fcntl, _exit, exit_group, getpeername,
// with listenerPath at bypass4netns's socket). The OCI runtime that applies
// the profile and hands the listener over is runc, started inside
// RootlessKit v3 (--net=slirp4netns), the layout rootless Docker uses.
//
// Not through Docker: Debian 12's Docker 20.10 drops listenerPath from a
// --security-opt seccomp profile (the container's config.json has none), so
// runc fails with "listenerPath is not set" and its init then blocks for
// ever in close(2) of the listener under the profile; runc itself (1.1.5)
// hands the listener over correctly, which is all Docker would have added.

import (
	"context"
	"debug/buildinfo"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// b4nLabel names the rows; the version is the one bench/run.sh installs.
const b4nLabel = "bypass4netns v0.4.2"

// b4nUDP is why bypass4netns has no UDP rows.
const b4nUDP = "bypass4netns v0.4.2 bypasses only SOCK_STREAM sockets (pkg/bypass4netns/bypass4netns.go: \"only accepting TCP socket\"); a UDP server in its container gets no host socket"

// b4nEgressAddr is a host address for namespace → host: bypass4netns
// refuses the host's loopback range by design (its README's caveats), so
// the harness adds this address to the host's lo for the run.
const b4nEgressAddr = "198.18.99.1"

// findB4n checks for bypass4netns, runc and RootlessKit v3, which its rows
// need. It is kept out of h.peers: it is no launcher.
func findB4n(ctx context.Context, h *harness) *peer {
	p := &peer{id: "b4n", label: b4nLabel, bin: h.o.b4n}
	for _, bin := range []string{h.o.b4n, h.o.runc, h.o.rk3} {
		if fi, err := os.Stat(bin); err != nil || fi.Mode()&0o111 == 0 {
			p.missing = bin + " is missing (bench/run.sh installs bypass4netns with `go install` (cgo, libseccomp-dev), runc and RootlessKit v3)"
			return p
		}
	}
	if _, errOut, err := h.runCmd(ctx, 10*time.Second, true, p.bin, "--version"); err != nil {
		p.missing = p.bin + " --version failed: " + tail(errOut, 1)
		return p
	}
	h.cleanup()
	// `go install` leaves its own version string unset; the module
	// version is in the binary's build information.
	p.version = "unknown"
	if bi, err := buildinfo.ReadFile(p.bin); err == nil {
		p.version = bi.Main.Path + " " + bi.Main.Version
	}
	if out, err := exec.CommandContext(ctx, h.o.runc, "--version").Output(); err == nil {
		p.version += "; " + strings.Join(strings.Fields(strings.SplitN(string(out), "\n", 2)[0]), " ")
	}
	return p
}

// b4nVariant is one bypass4netns row set of a group.
func (h *harness) b4nVariant(config, refKey string, benches []string, run func(context.Context) (map[string]float64, error)) variant {
	v := variant{label: b4nLabel + " · " + config, peer: "b4n", config: config, refKey: refKey, benches: benches, skip: h.b4n.missing}
	if v.skip == "" {
		v.run = run
	}
	return v
}

// b4nStart starts bypass4netns publishing hostPort to childPort (0: none)
// and a container running script (sh -c; DIR is the session's scratch
// directory, bind-mounted at the same path) inside RootlessKit v3.
func (h *harness) b4nStart(ctx context.Context, hostPort, childPort int, script string) (*session, error) {
	dir, err := h.scratch()
	if err != nil {
		return nil, err
	}
	sock := filepath.Join(dir, "bypass4netns.sock")
	args := []string{"--socket=" + sock, "--com-socket=" + filepath.Join(dir, "bypass4netnsd-com.sock"),
		"--ignore=127.0.0.0/8,10.0.0.0/8,auto"}
	if hostPort > 0 {
		args = append(args, fmt.Sprintf("-p=%d:%d", hostPort, childPort))
	}
	d, err := h.start(h.command(ctx, true, h.o.b4n, args...))
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(10 * time.Second)
	for !exists(sock) {
		if d.exited() || time.Now().After(deadline) || ctx.Err() != nil {
			return nil, fmt.Errorf("bypass4netns did not create %s: %s", sock, tail(d.stderr.String(), 2))
		}
		time.Sleep(10 * time.Millisecond)
	}
	bundle := filepath.Join(dir, "bundle")
	if err := h.b4nBundle(ctx, bundle, sock, strings.ReplaceAll(script, "DIR", dir)); err != nil {
		return nil, err
	}
	// runc runs in the foreground inside RootlessKit's namespaces; the
	// scratch directory (under /tmp) is shared with the host.
	inner := fmt.Sprintf("%s --root %s/runc run --bundle %s b4n-%d & touch %s/ready; wait", h.o.runc, dir, bundle, h.next(), dir)
	flags := []string{"--state-dir=" + filepath.Join(dir, "state"), "--net=slirp4netns", "--mtu=65520", "--disable-host-loopback", "--", "sh", "-c", inner}
	st, err := h.start(h.command(ctx, true, h.o.rk3, flags...))
	if err != nil {
		return nil, err
	}
	s := &session{started: st, dir: dir, state: filepath.Join(dir, "state")}
	for !exists(filepath.Join(dir, "ready")) {
		if st.exited() || time.Now().After(deadline.Add(20*time.Second)) || ctx.Err() != nil {
			return nil, fmt.Errorf("RootlessKit v3 with runc did not start (%v): %s", st.err, tail(st.stderr.String(), 3))
		}
		time.Sleep(5 * time.Millisecond)
	}
	return s, nil
}

// b4nBundle writes an OCI bundle: `runc spec --rootless` less its user
// namespace (RootlessKit's is the container's, as under rootless Docker),
// the host's /usr and /etc read-only, the harness's scratch directory, and
// the README's seccomp profile.
func (h *harness) b4nBundle(ctx context.Context, bundle, sock, script string) error {
	// Every path belongs to the test user, so that runc (root only in
	// RootlessKit's namespace) can make its mount points.
	made := []string{bundle, filepath.Join(bundle, "rootfs")}
	for _, d := range []string{"usr", "etc", "tmp", "proc", "sys", "dev"} {
		made = append(made, filepath.Join(bundle, "rootfs", d))
	}
	for _, d := range made {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	for _, l := range []string{"bin", "lib", "lib64", "sbin"} {
		made = append(made, filepath.Join(bundle, "rootfs", l))
		if err := os.Symlink("usr/"+l, made[len(made)-1]); err != nil {
			return err
		}
	}
	if out, err := exec.CommandContext(ctx, h.o.runc, "spec", "--rootless", "--bundle", bundle).CombinedOutput(); err != nil {
		return fmt.Errorf("runc spec: %v: %s", err, tail(string(out), 2))
	}
	path := filepath.Join(bundle, "config.json")
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var spec map[string]any
	if err := json.Unmarshal(b, &spec); err != nil {
		return fmt.Errorf("parse %s: %w", path, err)
	}
	caps := []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID", "CAP_SETUID",
		"CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_SYS_CHROOT", "CAP_AUDIT_WRITE"}
	proc := spec["process"].(map[string]any)
	proc["terminal"] = false
	proc["args"] = []string{"/bin/sh", "-c", script}
	proc["env"] = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"}
	proc["capabilities"] = map[string]any{"bounding": caps, "effective": caps, "permitted": caps}
	// Descriptor limits as the harness set them (runc spec would cap them at 1024).
	delete(proc, "rlimits")
	spec["root"] = map[string]any{"path": "rootfs", "readonly": true}
	mounts := spec["mounts"].([]any)
	for _, m := range []struct{ dst, src, typ string }{
		{"/usr", "/usr", "bind"}, {"/etc", "/etc", "bind"}, {"/tmp", "tmpfs", "tmpfs"}, {h.work, h.work, "bind"},
	} {
		opts := []string{"rbind", "ro"}
		if m.typ == "tmpfs" {
			opts = []string{"nosuid", "nodev"}
		} else if m.dst == h.work {
			opts = []string{"rbind", "rw"}
		}
		mounts = append(mounts, map[string]any{"destination": m.dst, "source": m.src, "type": m.typ, "options": opts})
	}
	spec["mounts"] = mounts
	linux := spec["linux"].(map[string]any)
	var nss []any
	for _, ns := range linux["namespaces"].([]any) {
		if ns.(map[string]any)["type"] != "user" {
			nss = append(nss, ns)
		}
	}
	linux["namespaces"] = nss
	delete(linux, "uidMappings")
	delete(linux, "gidMappings")
	// test/seccomp.json.sh of bypass4netns v0.4.2, verbatim in meaning.
	linux["seccomp"] = map[string]any{
		"defaultAction": "SCMP_ACT_ALLOW",
		"architectures": []string{"SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"},
		"listenerPath":  sock,
		"syscalls": []map[string]any{{
			"names":  []string{"bind", "close", "connect", "setsockopt", "fcntl", "_exit", "exit_group", "getpeername"},
			"action": "SCMP_ACT_NOTIFY",
		}},
	}
	out, err := json.MarshalIndent(spec, "", " ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, out, 0o644); err != nil {
		return err
	}
	for _, p := range append(made, path) {
		if err := os.Lchown(p, h.uid, h.gid); err != nil {
			return err
		}
	}
	return nil
}

// b4nForward runs server (PORT: the container's port) in the container
// with cp published on a free host port; it returns the host port once the
// server's own socket holds it.
func (h *harness) b4nForward(ctx context.Context, server string, cp int) (*session, int, error) {
	hp, err := freePort()
	if err != nil {
		return nil, 0, err
	}
	s, err := h.b4nStart(ctx, hp, cp, strings.ReplaceAll(server, "PORT", strconv.Itoa(cp)))
	if err != nil {
		return nil, 0, err
	}
	if err := h.bypassListening(ctx, hp, 15*time.Second); err != nil {
		s.stop(h)
		return nil, 0, fmt.Errorf("bypass4netns: %w (RootlessKit, runc: %s)", err, tail(s.stderr.String()+"\n"+s.stdout.String(), 3))
	}
	return s, hp, nil
}

// b4nEgress adds b4nEgressAddr to the host's lo, once per run.
func (h *harness) b4nEgress(ctx context.Context) error {
	if h.b4nLink {
		return nil
	}
	_, _, _ = h.runCmd(ctx, 10*time.Second, false, "ip", "addr", "del", b4nEgressAddr+"/32", "dev", "lo")
	if _, _, err := h.runCmd(ctx, 10*time.Second, false, "ip", "addr", "add", b4nEgressAddr+"/32", "dev", "lo"); err != nil {
		return fmt.Errorf("host address for bypass4netns egress: %w", err)
	}
	h.b4nLink = true
	h.closers = append(h.closers, func() {
		_ = exec.Command("ip", "addr", "del", b4nEgressAddr+"/32", "dev", "lo").Run()
	})
	return nil
}

// hostServerAt starts `iperf3 -s` on the host's addr as the test user and
// waits until it answers.
func (h *harness) hostServerAt(ctx context.Context, addr string, port int) error {
	s, err := h.start(h.command(ctx, true, "iperf3", "-s", "-B", addr, "-p", strconv.Itoa(port)))
	if err != nil {
		return err
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp4", net.JoinHostPort(addr, strconv.Itoa(port)), time.Second)
		if err == nil {
			c.Close()
			// iperf3 takes the probe as a failed test; let it settle.
			time.Sleep(50 * time.Millisecond)
			return nil
		}
		if s.exited() || time.Now().After(deadline) {
			return fmt.Errorf("iperf3 on %s:%d did not start: %s", addr, port, tail(s.stderr.String()+s.stdout.String(), 2))
		}
		time.Sleep(10 * time.Millisecond)
	}
}
