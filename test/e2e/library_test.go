package e2e

// Tests of the rootless package through examples/httpd-rootless, a daemon
// that makes itself rootless with k3s's profile. The daemon runs as the
// test user inside a network namespace the test creates, because k3s's
// profile requires net.ipv4.ip_forward=1 and the test must not change the
// host's value; the namespace is the daemon's "host".

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/unroot/unroot/api"
	"github.com/vishvananda/netns"
)

const cgroupWarnV1 = "Enabling cgroup2 is highly recommended, see https://rootlesscontaine.rs/getting-started/common/cgroup2/"

var (
	exampleBinary = &goBinary{name: "examples/httpd-rootless", pkg: "../../examples/httpd-rootless"}
	nsSeq         atomic.Int32
)

// exampleBin builds examples/httpd-rootless once per test binary into a
// world-readable directory.
func exampleBin(t *testing.T) string { return exampleBinary.path(t) }

// libNetns creates a network namespace with lo up and the given
// net.ipv4.ip_forward, removed at the end of the test.
func libNetns(t *testing.T, ipForward string) string {
	t.Helper()
	name := fmt.Sprintf("unroot-lib-%d-%d", os.Getpid(), nsSeq.Add(1))
	for _, args := range [][]string{
		{"ip", "netns", "add", name},
		{"ip", "-n", name, "link", "set", "lo", "up"},
		{"nsenter", "--net=/run/netns/" + name, "sysctl", "-qw", "net.ipv4.ip_forward=" + ipForward},
	} {
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
		if args[1] == "netns" {
			t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
		}
	}
	return name
}

// libCmd runs the example daemon as the test user inside netns ns, with
// the test user's environment plus env.
func libCmd(t *testing.T, ctx context.Context, ns string, env []string, args ...string) *exec.Cmd {
	t.Helper()
	uid, gid := testIDs(t)
	bin := exampleBin(t)
	cmd := UserCmd(t, ctx, "nsenter", append([]string{"--net=/run/netns/" + ns, "--",
		"/usr/bin/setpriv", "--reuid=" + strconv.Itoa(uid), "--regid=" + strconv.Itoa(gid), "--clear-groups", "--", bin}, args...)...)
	// nsenter needs root; setpriv drops to the test user before the
	// example starts, and both exec, so cmd's PID is the parent phase.
	cmd.SysProcAttr.Credential = nil
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		cmd.Env = slices.DeleteFunc(cmd.Env, func(e string) bool { return strings.HasPrefix(e, k+"=") })
	}
	cmd.Env = append(cmd.Env, env...)
	return cmd
}

// report is what the example prints with -report.
type report struct {
	Sock     string            `json:"sock"`
	PkgSock  string            `json:"pkgSock"`
	StateDir string            `json:"stateDir"`
	UID      int               `json:"uid"`
	PID      int               `json:"pid"`
	PPID     int               `json:"ppid"`
	ProcPID  string            `json:"procPID"`
	Env      []string          `json:"env"`
	Ifaces   []reportIface     `json:"ifaces"`
	Info     *api.Info         `json:"info"`
	InfoErr  string            `json:"infoErr"`
	Dial     map[string]string `json:"dial"`
	Write    map[string]string `json:"write"`
}

type reportIface struct {
	Name  string   `json:"name"`
	MTU   int      `json:"mtu"`
	Addrs []string `json:"addrs"`
}

func (r report) iface(name string) reportIface {
	for _, i := range r.Ifaces {
		if i.Name == name {
			return i
		}
	}
	return reportIface{}
}

func parseReport(t *testing.T, stdout string) report {
	t.Helper()
	for _, line := range strings.Split(stdout, "\n") {
		if js, ok := strings.CutPrefix(line, "report: "); ok {
			var r report
			if err := json.Unmarshal([]byte(js), &r); err != nil {
				t.Fatalf("report %q: %v", js, err)
			}
			return r
		}
	}
	t.Fatalf("no report line in stdout %q", stdout)
	return report{}
}

// checkDaemonEnv asserts the daemon phase's environment: RootlessKit's
// variables present, no phase marker left.
func checkDaemonEnv(t *testing.T, r report, state string) {
	t.Helper()
	uid, gid := testIDs(t)
	for _, want := range []string{"ROOTLESSKIT_STATE_DIR=" + state, "ROOTLESSKIT_PARENT_EUID=" + strconv.Itoa(uid), "ROOTLESSKIT_PARENT_EGID=" + strconv.Itoa(gid)} {
		if !slices.Contains(r.Env, want) {
			t.Errorf("daemon env lacks %s: %q", want, r.Env)
		}
	}
	for _, e := range r.Env {
		if strings.HasPrefix(e, "_K3S_ROOTLESS") || strings.HasPrefix(e, "_UNROOT") {
			t.Errorf("marker leaked into the daemon's environment: %s", e)
		}
	}
	if r.UID != 0 {
		t.Errorf("daemon uid %d, want 0 inside its namespace", r.UID)
	}
	// PID namespace with the reaper as PID 1 and the daemon's parent, and
	// a /proc of that namespace.
	if r.PPID != 1 || r.ProcPID != strconv.Itoa(r.PID) {
		t.Errorf("daemon pid %d, ppid %d, /proc/self says %s; want ppid 1 and a /proc that agrees", r.PID, r.PPID, r.ProcPID)
	}
	if want := filepath.Join(state, "api.sock"); r.Sock != want || r.PkgSock != want || r.StateDir != state {
		t.Errorf("sock %q, rootless.Sock %q, state %q; want %s and %s", r.Sock, r.PkgSock, r.StateDir, want, state)
	}
}

func checkCgroupWarning(t *testing.T, stderr string) {
	t.Helper()
	if !strings.Contains(stderr, "httpd-rootless: warning: "+cgroupWarnV1) &&
		!strings.Contains(stderr, "httpd-rootless: warning: cannot evacuate cgroup2 into k3s_evac") &&
		!strings.Contains(stderr, "k3s_evac") {
		t.Errorf("no cgroup2 warning (and no evacuation) in stderr %q", stderr)
	}
}

// inNetns runs f on a thread in netns ns: sockets made there stay there.
func inNetns(t *testing.T, ns string, f func()) {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	h, err := netns.GetFromName(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if err := netns.Set(h); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := netns.Set(orig); err != nil {
			panic("cannot return to the test's network namespace: " + err.Error())
		}
	}()
	f()
}

func curlIn(t *testing.T, ns, url string) (string, error) {
	t.Helper()
	out, err := exec.Command("nsenter", "--net=/run/netns/"+ns, "curl", "-sS", "--max-time", "10", url).CombinedOutput()
	return string(out), err
}

// runReport runs the example to its report and exit 0 and returns the
// report and stderr; it fails the test on another exit status.
func runReport(t *testing.T, ns string, env []string, extra ...string) (report, string, string) {
	t.Helper()
	state := filepath.Join(TempDir(t), "state")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	args := append([]string{"-state", state, "-report", "-exit", "0"}, extra...)
	r := Run(t, libCmd(t, ctx, ns, env, args...))
	if r.Code != 0 {
		t.Fatalf("exit %d with %q\nstdout: %s\nstderr: %s", r.Code, env, r.Stdout, r.Stderr)
	}
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Errorf("state directory %s left behind (%v)", state, err)
	}
	return parseReport(t, r.Stdout), r.Stderr, state
}

// libUntilReady starts cmd (the example daemon) and reads its stdout up to
// the line "ready", which it prints once it serves; it fails t if the
// daemon ends first or ctx is done. It returns what it read and the rest
// of the lines, which a caller that waits for cmd drains first.
func libUntilReady(t *testing.T, ctx context.Context, cmd *exec.Cmd, stderr fmt.Stringer) (string, <-chan string) {
	t.Helper()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 16)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	var stdout strings.Builder
	for ready := false; !ready; {
		select {
		case l, ok := <-lines:
			if !ok {
				cmd.Wait()
				t.Fatalf("daemon ended before ready\nstdout: %s\nstderr: %s", stdout.String(), stderr.String())
			}
			stdout.WriteString(l + "\n")
			ready = l == "ready"
		case <-ctx.Done():
			t.Fatalf("not ready: %v\nstdout: %s", ctx.Err(), stdout.String())
		}
	}
	return stdout.String(), lines
}

func TestLibraryServesPublishedPort(t *testing.T) {
	ns := libNetns(t, "1")
	state := filepath.Join(TempDir(t), "state")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := libCmd(t, ctx, ns, nil, "-state", state, "-listen", "8080", "-publish", "18080", "-report")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	ready, lines := libUntilReady(t, ctx, cmd, &stderr)
	t.Logf("parent start to daemon serving its published port: %v", time.Since(start))
	r := parseReport(t, ready)
	checkDaemonEnv(t, r, state)
	if tap := r.iface("tap0"); tap.MTU != 65520 || !slices.Contains(tap.Addrs, "10.41.0.100/16") {
		t.Errorf("tap0 %+v, want 10.41.0.100/16 with MTU 65520 (k3s's defaults)", tap)
	}
	if r.Info == nil || r.Info.PortDriver == nil || r.Info.PortDriver.Driver != "builtin" || r.Info.NetworkDriver == nil || r.Info.NetworkDriver.Driver != "slirp4netns" {
		t.Errorf("API info %+v (%s), want slirp4netns and builtin", r.Info, r.InfoErr)
	}
	body, err := curlIn(t, ns, "http://127.0.0.1:18080/")
	if err != nil || !strings.HasPrefix(body, "hello from httpd-rootless, uid 0 inside") {
		t.Errorf("curl 127.0.0.1:18080: %v %q", err, body)
	}
	// rootlessctl finds the port the daemon added for itself.
	lr := RunUser(t, 10*time.Second, "rootlessctl", "--socket", filepath.Join(state, "api.sock"), "list-ports")
	if lr.Code != 0 || !regexp.MustCompile(`(?m)^1\s+tcp\s+127\.0\.0\.1\s+18080\s+8080\s*$`).MatchString(lr.Stdout) {
		t.Errorf("rootlessctl list-ports: exit %d, %q %q", lr.Code, lr.Stdout, lr.Stderr)
	}
	if body, err := curlIn(t, ns, "http://127.0.0.1:18080/exit?code=3"); err != nil || !strings.Contains(body, "exiting with 3") {
		t.Errorf("curl /exit: %v %q", err, body)
	}
	for range lines {
	}
	err = cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != 3 {
		t.Errorf("parent exit %d (%v), want the daemon's 3\nstderr: %s", code, err, stderr.String())
	}
	checkCgroupWarning(t, stderr.String())
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Errorf("state directory %s left behind (%v)", state, err)
	}
	if r.Info != nil {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", r.Info.ChildPID)); err == nil {
			t.Errorf("namespace init %d still running after the parent exited", r.Info.ChildPID)
		}
	}
}

func TestLibrarySignalEndsDaemon(t *testing.T) {
	ns := libNetns(t, "1")
	state := filepath.Join(TempDir(t), "state")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := libCmd(t, ctx, ns, nil, "-state", state, "-listen", "8081")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	for sc.Scan() && sc.Text() != "ready" {
	}
	// The daemon may say ready before the parent has heard that it
	// started; a SIGTERM in between aborts the start-up (exit 1), as
	// documented. child_pid is written once the start-up is over.
	WaitFile(t, filepath.Join(state, "child_pid"), 20*time.Second)
	// SIGTERM to the parent phase reaches the daemon, which shuts down
	// cleanly and exits 0; the parent reports that 0.
	cmd.Process.Signal(syscall.SIGTERM)
	for sc.Scan() {
	}
	cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("after SIGTERM: exit %d, want 0\nstderr: %s", code, stderr.String())
	}
}

func TestLibraryExitStatus(t *testing.T) {
	ns := libNetns(t, "1")
	for _, code := range []int{0, 3, 42} {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		r := Run(t, libCmd(t, ctx, ns, nil, "-exit", strconv.Itoa(code)))
		cancel()
		if r.Code != code {
			t.Errorf("daemon exits %d: parent exits %d\nstderr: %s", code, r.Code, r.Stderr)
		}
	}
}

func TestLibraryKnobsGood(t *testing.T) {
	ns := libNetns(t, "1")
	// A listener on the namespace's 127.0.0.1 stands for a host service.
	var ln net.Listener
	inNetns(t, ns, func() {
		var err error
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
	})
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	hostPort := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)

	t.Run("defaults", func(t *testing.T) {
		r, stderr, state := runReport(t, ns, nil, "-dial", "10.41.0.2:"+hostPort, "-write", "/etc", "-write", "/var/lib", "-write", "/run", "-write", "/opt")
		checkDaemonEnv(t, r, state)
		if r.Dial["10.41.0.2:"+hostPort] == "ok" {
			t.Errorf("reached the host's loopback through the gateway although DISABLE_HOST_LOOPBACK defaults to true")
		}
		for _, d := range []string{"/etc", "/var/lib", "/run"} {
			if r.Write[d] != "ok" {
				t.Errorf("%s not copied up: %s", d, r.Write[d])
			}
		}
		if r.Write["/opt"] == "ok" {
			t.Errorf("/opt writable without K3S_ROOTLESS_COPYUPDIRS")
		}
		if strings.Contains(stderr, "K3S_ROOTLESS") {
			t.Errorf("warnings without knobs: %s", stderr)
		}
		checkCgroupWarning(t, stderr)
	})
	t.Run("all set", func(t *testing.T) {
		env := []string{
			"K3S_ROOTLESS_MTU=1500",
			"K3S_ROOTLESS_CIDR=10.42.0.0/24",
			"K3S_ROOTLESS_ENABLE_IPV6=true",
			"K3S_ROOTLESS_PORT_DRIVER=slirp4netns",
			"K3S_ROOTLESS_DISABLE_HOST_LOOPBACK=false",
			"K3S_ROOTLESS_COPYUPDIRS=/opt,/srv",
		}
		r, stderr, state := runReport(t, ns, env, "-dial", "10.42.0.2:"+hostPort, "-write", "/opt", "-write", "/srv")
		checkDaemonEnv(t, r, state)
		tap := r.iface("tap0")
		if tap.MTU != 1500 || !slices.Contains(tap.Addrs, "10.42.0.100/24") || !slices.Contains(tap.Addrs, "fd00::100/64") {
			t.Errorf("tap0 %+v, want MTU 1500, 10.42.0.100/24 and fd00::100/64", tap)
		}
		if r.Info == nil || r.Info.PortDriver == nil || r.Info.PortDriver.Driver != "slirp4netns" {
			t.Errorf("port driver %+v (%s), want slirp4netns", r.Info, r.InfoErr)
		}
		if got := r.Dial["10.42.0.2:"+hostPort]; got != "ok" {
			t.Errorf("host loopback through the gateway with DISABLE_HOST_LOOPBACK=false: %s", got)
		}
		for _, d := range []string{"/opt", "/srv"} {
			if r.Write[d] != "ok" {
				t.Errorf("%s not copied up: %s", d, r.Write[d])
			}
		}
		if strings.Contains(stderr, "K3S_ROOTLESS") {
			t.Errorf("warnings for good values: %s", stderr)
		}
	})
	t.Run("builtin named", func(t *testing.T) {
		r, stderr, _ := runReport(t, ns, []string{"K3S_ROOTLESS_PORT_DRIVER=BUILTIN", "K3S_ROOTLESS_ENABLE_IPV6=false"})
		if r.Info == nil || r.Info.PortDriver == nil || r.Info.PortDriver.Driver != "builtin" {
			t.Errorf("port driver %+v, want builtin", r.Info)
		}
		if strings.Contains(stderr, "K3S_ROOTLESS") {
			t.Errorf("warnings for good values: %s", stderr)
		}
	})
}

func TestLibraryKnobsLenient(t *testing.T) {
	ns := libNetns(t, "1")
	tests := []struct {
		env, warn string
		check     func(report) bool
	}{
		{"K3S_ROOTLESS_MTU=abc", `httpd-rootless: warning: K3S_ROOTLESS_MTU="abc": not a number`, func(r report) bool { return r.iface("tap0").MTU == 65520 }},
		{"K3S_ROOTLESS_MTU=70000", `httpd-rootless: warning: K3S_ROOTLESS_MTU="70000": mtu must be <= 65521`, func(r report) bool { return r.iface("tap0").MTU == 65520 }},
		{"K3S_ROOTLESS_ENABLE_IPV6=maybe", `httpd-rootless: warning: K3S_ROOTLESS_ENABLE_IPV6="maybe": not a boolean`, func(r report) bool {
			return !slices.Contains(r.iface("tap0").Addrs, "fd00::100/64")
		}},
		{"K3S_ROOTLESS_PORT_DRIVER=vpnkit", `httpd-rootless: warning: K3S_ROOTLESS_PORT_DRIVER="vpnkit": unknown port driver (use builtin or slirp4netns); using builtin`, func(r report) bool {
			return r.Info != nil && r.Info.PortDriver != nil && r.Info.PortDriver.Driver == "builtin"
		}},
		{"K3S_ROOTLESS_DISABLE_HOST_LOOPBACK=perhaps", `httpd-rootless: warning: K3S_ROOTLESS_DISABLE_HOST_LOOPBACK="perhaps": not a boolean (use true or false); using the default (true)`, func(r report) bool {
			return r.iface("tap0").MTU == 65520
		}},
	}
	for _, tt := range tests {
		t.Run(tt.env, func(t *testing.T) {
			r, stderr, state := runReport(t, ns, []string{tt.env})
			if !strings.Contains(stderr, tt.warn) {
				t.Errorf("stderr %q lacks warning %q", stderr, tt.warn)
			}
			if !tt.check(r) {
				t.Errorf("default not kept: %+v", r)
			}
			checkDaemonEnv(t, r, state)
		})
	}
}

// failing runs the example expecting a refused start: exit 1, one line
// naming the problem, no stack trace, nothing left behind.
func failing(t *testing.T, ns string, env []string, want string, extra ...string) {
	t.Helper()
	state := filepath.Join(TempDir(t), "state")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r := Run(t, libCmd(t, ctx, ns, env, append([]string{"-state", state, "-exit", "0"}, extra...)...))
	if r.Code != 1 {
		t.Errorf("exit %d, want 1\nstdout: %s\nstderr: %s", r.Code, r.Stdout, r.Stderr)
	}
	var errLines []string
	for _, l := range strings.Split(strings.TrimSpace(r.Stderr), "\n") {
		if !strings.HasPrefix(l, "httpd-rootless: warning: ") {
			errLines = append(errLines, l)
		}
	}
	if len(errLines) != 1 || !strings.HasPrefix(errLines[0], "httpd-rootless: "+want) {
		t.Errorf("stderr %q, want one line starting %q", r.Stderr, "httpd-rootless: "+want)
	}
	if strings.Contains(r.Stdout, "report") || strings.Contains(r.Stderr, "goroutine") {
		t.Errorf("daemon phase ran or stack trace: %q %q", r.Stdout, r.Stderr)
	}
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Errorf("state directory %s left behind (%v)", state, err)
	}
}

func TestLibraryRefusedStarts(t *testing.T) {
	ns := libNetns(t, "1")
	t.Run("cidr host bits", func(t *testing.T) {
		failing(t, ns, []string{"K3S_ROOTLESS_CIDR=10.0.2.100/24"}, "K3S_ROOTLESS_CIDR: cidr must be like 10.0.2.0/24, not like 10.0.2.100/24")
	})
	t.Run("cidr garbage", func(t *testing.T) {
		failing(t, ns, []string{"K3S_ROOTLESS_CIDR=tennet"}, `K3S_ROOTLESS_CIDR: cidr "tennet" is not an address/length pair: give a network like 10.0.2.0/24`)
	})
	t.Run("copy-up tmp", func(t *testing.T) {
		failing(t, ns, []string{"K3S_ROOTLESS_COPYUPDIRS=/opt,/tmp"}, "K3S_ROOTLESS_COPYUPDIRS: copy-up \"/tmp\": /tmp is used for the copy-up itself")
	})
	t.Run("copy-up relative", func(t *testing.T) {
		failing(t, ns, []string{"K3S_ROOTLESS_COPYUPDIRS=opt"}, "K3S_ROOTLESS_COPYUPDIRS: copy-up \"opt\": must be an absolute path")
	})
	t.Run("slirp4netns missing", func(t *testing.T) {
		failing(t, ns, []string{"PATH=/nonexistent"}, "rootless k3s: slirp4netns not found in PATH: install it (apt-get install slirp4netns)")
	})
	t.Run("profile sysctl", func(t *testing.T) {
		failing(t, ns, nil, "expected sysctl value \"kernel.ostype\" to be \"Plan9\", got \"Linux\"; try adding \"kernel.ostype=Plan9\" to /etc/sysctl.conf and running `sudo sysctl --system`", "-sysctl", "kernel.ostype=Plan9")
	})
	t.Run("ip_forward 0", func(t *testing.T) {
		// k3s's profile checks net.ipv4.ip_forward; a fresh namespace has 0.
		failing(t, libNetns(t, "0"), nil, "expected sysctl value \"net.ipv4.ip_forward\" to be \"1\", got \"0\"; try adding \"net.ipv4.ip_forward=1\" to /etc/sysctl.conf and running `sudo sysctl --system`")
	})
}

func TestLibraryMountHook(t *testing.T) {
	ns := libNetns(t, "1")
	// /mnt is the host's, read-only to the namespace's root until the
	// hook mounts a tmpfs on it.
	r, _, _ := runReport(t, ns, nil, "-tmpfs", "/mnt", "-write", "/mnt")
	if r.Write["/mnt"] != "ok" {
		t.Errorf("tmpfs from the mount hook not writable: %s", r.Write["/mnt"])
	}
	// A failing hook is the daemon's error: one line, and the parent exits
	// with the daemon's status 1.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res := Run(t, libCmd(t, ctx, ns, nil, "-tmpfs", "/nonexistent-dir", "-report"))
	want := "httpd-rootless: rootless k3s: mount: mount tmpfs on /nonexistent-dir: no such file or directory\n"
	if res.Code != 1 || !strings.HasSuffix(res.Stderr, want) || strings.Contains(res.Stdout, "report") {
		t.Errorf("failing hook: exit %d, stdout %q, stderr %q; want exit 1 and %q", res.Code, res.Stdout, res.Stderr, want)
	}
}

func TestLibraryStateDir(t *testing.T) {
	ns := libNetns(t, "1")
	state := filepath.Join(TempDir(t), "state")
	// A directory left by a killed run is reused: stale entries go.
	uid, gid := testIDs(t)
	if err := os.MkdirAll(filepath.Join(state, "stale"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{state, filepath.Join(state, "stale")} {
		os.Chown(p, uid, gid)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	first := libCmd(t, ctx, ns, nil, "-state", state, "-listen", "8082")
	out, _ := first.StdoutPipe()
	var stderr bytes.Buffer
	first.Stderr = &stderr
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	for sc.Scan() && sc.Text() != "ready" {
	}
	if _, err := os.Stat(filepath.Join(state, "stale")); !os.IsNotExist(err) {
		t.Errorf("stale entry kept in the state directory (%v)", err)
	}
	// A second instance on the same directory is refused while the first runs.
	second := Run(t, libCmd(t, ctx, ns, nil, "-state", state, "-exit", "0"))
	if second.Code != 1 || !strings.Contains(second.Stderr, "another RootlessKit is running with the same state directory") {
		t.Errorf("second instance: exit %d, stderr %q", second.Code, second.Stderr)
	}
	if _, err := os.Stat(filepath.Join(state, "api.sock")); err != nil {
		t.Errorf("the refused instance disturbed the running one: %v", err)
	}
	first.Process.Signal(syscall.SIGTERM)
	for sc.Scan() {
	}
	first.Wait()
	if code := first.ProcessState.ExitCode(); code != 0 {
		t.Errorf("first instance exit %d\nstderr: %s", code, stderr.String())
	}
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Errorf("state directory %s left behind (%v)", state, err)
	}
}
