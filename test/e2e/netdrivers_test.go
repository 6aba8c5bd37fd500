package e2e

// End-to-end tests of the slirp4netns and pasta network drivers through the
// real binary, invoked as rootlesskit (whose flags are fixed by the contract):
// the interface, routes and resolv.conf the command sees, the host's loopback
// reached via the gateway only when allowed, --detach-netns, and no helper
// left running after unroot exits.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/unroot/unroot/api"
	"github.com/unroot/unroot/internal/proctree"
)

// netRun is one unroot run whose processes were recorded while it ran.
type netRun struct {
	Result
	// Descendants are every process under unroot (child, helpers, command)
	// seen once networking was ready.
	Descendants []int
	// Comms are their names then; pasta re-executes itself as passt.avx2
	// (comm "passt.avx2") on CPUs with AVX2, so that counts as "pasta".
	Comms []string
}

func contains(comms []string, name string) bool {
	for _, c := range comms {
		if c == name || (name == "pasta" && strings.HasPrefix(c, "passt")) {
			return true
		}
	}
	return false
}

// runNet runs rootlesskit ARGS sh -c SCRIPT as the test user. SCRIPT's last
// step should be `read _`: the test answers once it has recorded unroot's
// process tree, so helpers are seen while they run.
func runNet(t *testing.T, args []string, script string) netRun {
	t.Helper()
	return runNetDuring(t, args, script, nil)
}

// runNetDuring is runNet that also calls during (if not nil) while the
// command runs with its network ready; it gets the state directory.
func runNetDuring(t *testing.T, args []string, script string, during func(state string)) netRun {
	t.Helper()
	state := filepath.Join(TempDir(t), "state")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	full := append([]string{"--state-dir=" + state}, args...)
	full = append(full, "sh", "-c", script)
	cmd := UserCmd(t, ctx, "rootlesskit", full...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var so, se strings.Builder
	cmd.Stdout, cmd.Stderr = &so, &se
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var r netRun
	deadline := time.Now().Add(20 * time.Second)
	for !fileExists(filepath.Join(state, "child_pid")) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	// child_pid is written when the network is ready; the command runs by then.
	r.Descendants = descendants(cmd.Process.Pid)
	for _, p := range r.Descendants {
		r.Comms = append(r.Comms, comm(p))
	}
	if during != nil {
		during(state)
		// during may have changed the tree (a restarted helper): record it too.
		for _, p := range descendants(cmd.Process.Pid) {
			if !slices.Contains(r.Descendants, p) {
				r.Descendants = append(r.Descendants, p)
				r.Comms = append(r.Comms, comm(p))
			}
		}
	}
	fmt.Fprintln(stdin)
	stdin.Close()
	err = cmd.Wait()
	r.Stdout, r.Stderr = so.String(), se.String()
	if ee, ok := err.(interface{ ExitCode() int }); ok && err != nil {
		r.Code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("rootlesskit %s: %v\nstderr: %s", strings.Join(full, " "), err, r.Stderr)
	}
	return r
}

// descendants lists every process below pid.
func descendants(pid int) []int { return proctree.Descendants(pid) }

func comm(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return strings.TrimSpace(string(b))
}

// running returns the pids (with their names) that still run, ignoring zombies.
func running(pids []int) []string {
	var left []string
	for _, p := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
		if err != nil {
			continue
		}
		s := string(b)
		if i := strings.LastIndexByte(s, ')'); i > 0 && len(s) > i+2 && s[i+2] == 'Z' {
			continue
		}
		left = append(left, fmt.Sprintf("%d(%s)", p, comm(p)))
	}
	return left
}

// checkHelperGone asserts that helper ran under unroot and that nothing of
// unroot's tree is left.
func checkHelperGone(t *testing.T, r netRun, helper string) {
	t.Helper()
	if !contains(r.Comms, helper) {
		t.Errorf("no %s process was seen under unroot (saw %v)", helper, r.Comms)
	}
	// They are killed as unroot ends; a loaded machine may take a while
	// to run their exits.
	deadline := time.Now().Add(10 * time.Second)
	for {
		left := running(r.Descendants)
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still running after unroot exited: %v", left)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// hostHTTP serves on the host's loopback, for the command to reach via the gateway.
func hostHTTP(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "host-loopback-ok") })}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().(*net.TCPAddr).Port
}

// inspect is the shell the command runs: what the network looks like inside
// (ns runs its arguments in the command's netns, or in the detached one).
const inspect = `
ns ip -4 -o addr show dev tap0
ns ip -4 route show default
ns ip -d -o link show dev tap0
echo "resolv=$(grep nameserver "$RESOLV" | head -1)"
echo "cc=$(ns cat /proc/sys/net/ipv4/tcp_congestion_control)"
if ns curl -sS --max-time 3 http://10.0.2.2:$PORT/; then echo; else echo curl-failed; fi
read _
`

func netScript(port int, detached bool) string {
	pre := `ns() { "$@"; }; RESOLV=/etc/resolv.conf`
	if detached {
		pre = `ns() { nsenter -n"$ROOTLESSKIT_STATE_DIR/netns" -- "$@"; }; RESOLV="$ROOTLESSKIT_STATE_DIR/resolv.conf"`
	}
	return fmt.Sprintf("%s; PORT=%d\n%s", pre, port, inspect)
}

// checkLocalCC checks the namespace's default congestion control in the
// script's "cc=" line: the host's, unless the host's is BBR, which pays
// pacing timers on hops that never congest (see sys.LocalCongestionControl).
func checkLocalCC(t *testing.T, out string) {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_congestion_control")
	if err != nil {
		t.Fatal(err)
	}
	host := strings.TrimSpace(string(b))
	_, rest, ok := strings.Cut(out, "cc=")
	if !ok {
		t.Fatalf("no cc= line in:\n%s", out)
	}
	got, _, _ := strings.Cut(rest, "\n")
	switch {
	case strings.HasPrefix(host, "bbr") && got != "cubic" && got != "reno":
		t.Errorf("namespace congestion control = %q with %q on the host, want cubic or reno", got, host)
	case !strings.HasPrefix(host, "bbr") && got != host:
		t.Errorf("namespace congestion control = %q, want the host's %q", got, host)
	}
}

func TestNetDrivers(t *testing.T) {
	for _, tc := range []struct {
		name     string
		args     []string
		helper   string
		detached bool
		loopback bool
	}{
		{name: "slirp4netns", args: []string{"--net=slirp4netns", "--copy-up=/etc"}, helper: "slirp4netns", loopback: true},
		{name: "slirp4netns-disable-host-loopback", args: []string{"--net=slirp4netns", "--copy-up=/etc", "--disable-host-loopback",
			"--slirp4netns-sandbox=auto", "--slirp4netns-seccomp=auto"}, helper: "slirp4netns"},
		{name: "slirp4netns-detach-netns", args: []string{"--net=slirp4netns", "--detach-netns", "--disable-host-loopback"}, helper: "slirp4netns", detached: true},
		{name: "pasta", args: []string{"--net=pasta", "--copy-up=/etc"}, helper: "pasta", loopback: true},
		{name: "pasta-implicit-disable-host-loopback", args: []string{"--net=pasta", "--copy-up=/etc", "--port-driver=implicit", "--disable-host-loopback"}, helper: "pasta"},
		{name: "pasta-detach-netns", args: []string{"--net=pasta", "--detach-netns"}, helper: "pasta", detached: true, loopback: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			port := hostHTTP(t)
			r := runNet(t, tc.args, netScript(port, tc.detached))
			if r.Code != 0 {
				t.Fatalf("exit %d\nstdout: %s\nstderr: %s", r.Code, r.Stdout, r.Stderr)
			}
			out := r.Stdout
			for _, want := range []string{
				"inet 10.0.2.100/24",
				"default via 10.0.2.2 dev tap0",
				"mtu 65520",
				// Pre-created persistent by the driver, so that stopping the
				// helper does not wait for the kernel to unregister the tap.
				"persist on",
				"resolv=nameserver 10.0.2.3",
			} {
				if !strings.Contains(out, want) {
					t.Errorf("missing %q in:\n%s\nstderr: %s", want, out, r.Stderr)
				}
			}
			checkLocalCC(t, out)
			if tc.loopback && !strings.Contains(out, "host-loopback-ok") {
				t.Errorf("host loopback via 10.0.2.2 not reached:\n%s", out)
			}
			if !tc.loopback && !strings.Contains(out, "curl-failed") {
				t.Errorf("host loopback reached via 10.0.2.2 despite --disable-host-loopback:\n%s", out)
			}
			checkHelperGone(t, r, tc.helper)
		})
	}
}

// With --port-driver=implicit, pasta forwards every port the command binds:
// a server inside is reached on the host's loopback with no -p.
func TestPastaImplicitPorts(t *testing.T) {
	port := ptPorts(t, 1)[0]
	www := TempDir(t)
	if err := os.WriteFile(filepath.Join(www, "index.html"), []byte("served-from-inside"), 0o644); err != nil {
		t.Fatal(err)
	}
	// --pidns so the daemonized httpd ends with the command.
	script := fmt.Sprintf("busybox httpd -p 0.0.0.0:%d -h %s && read _", port, www)
	var body string
	r := runNetDuring(t, []string{"--net=pasta", "--port-driver=implicit", "--disable-host-loopback", "--pidns"}, script, func(string) {
		// pasta scans the namespace's bound ports about once a second
		// (later on a loaded machine, where httpd also starts late); the
		// answer ends the wait.
		deadline := time.Now().Add(15 * time.Second)
		for time.Now().Before(deadline) {
			resp, err := (&http.Client{Timeout: time.Second}).Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				body = string(b)
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	if r.Code != 0 {
		t.Fatalf("exit %d\nstderr: %s", r.Code, r.Stderr)
	}
	if body != "served-from-inside" {
		t.Errorf("host → command through pasta's implicit forwarding: got %q", body)
	}
	checkHelperGone(t, r, "pasta")
}

// pasta's implicit forwarding publishes the UDP ports the command binds only
// since passt 2023_11_19: an older pasta (Debian 12's 2023_03_09) looks for
// them once, before the command runs, and forwards TCP alone. unroot says so
// once at start-up, with the fix, and only then.
func TestPastaImplicitUDP(t *testing.T) {
	srv := ptServer(t)
	port := ptPorts(t, 1)[0]
	script := fmt.Sprintf(`"%s" -http 0.0.0.0:%d -udp 0.0.0.0:%d >/dev/null & read _; kill $!`, srv, port, port)
	var tcpOK, udpOK bool
	r := runNetDuring(t, []string{"--net=pasta", "--port-driver=implicit"}, script, func(string) {
		// pasta scans the namespace's TCP ports about once a second; a
		// pasta that scans UDP ports may do so in a later round (a loaded
		// machine, or a newer pasta that scans them apart). The waits are
		// long because the server and pasta's scans both start late on a
		// loaded machine; an answer ends each at once, so only a pasta
		// that forwards no UDP pays the full UDP wait.
		tcpOK = waitHTTP(fmt.Sprintf("http://127.0.0.1:%d/", port), 30*time.Second)
		deadline := time.Now().Add(10 * time.Second)
		for tcpOK && !udpOK && time.Now().Before(deadline) {
			udpOK = udpAnswers(fmt.Sprintf("127.0.0.1:%d", port))
		}
	})
	if r.Code != 0 {
		t.Fatalf("exit %d\nstderr: %s", r.Code, r.Stderr)
	}
	if !tcpOK {
		t.Fatalf("TCP port %d never forwarded by pasta\nstderr: %s", port, r.Stderr)
	}
	const warning = "forwards only TCP with --port-driver=implicit"
	n := strings.Count(r.Stderr, warning)
	switch {
	case udpOK && n > 0:
		t.Errorf("pasta forwards UDP, yet unroot warned that it does not:\n%s", r.Stderr)
	case !udpOK && n != 1:
		t.Errorf("pasta forwarded no UDP; want the warning %q once, got it %d times in:\n%s", warning, n, r.Stderr)
	case !udpOK && !strings.Contains(r.Stderr, "--port-driver=builtin"):
		t.Errorf("the warning names no fix:\n%s", r.Stderr)
	}
	t.Logf("UDP forwarded by this pasta: %v; warned %d times", udpOK, n)
	checkHelperGone(t, r, "pasta")
}

// waitHTTP reports whether url answers within d.
func waitHTTP(url string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		resp, err := (&http.Client{Timeout: time.Second}).Get(url)
		if err == nil {
			resp.Body.Close()
			return true
		}
		time.Sleep(100 * time.Millisecond)
	}
	return false
}

// udpAnswers reports whether a datagram to addr gets an answer within 250 ms.
func udpAnswers(addr string) bool {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return false
	}
	defer c.Close()
	c.Write([]byte("ping"))
	c.SetReadDeadline(time.Now().Add(250 * time.Millisecond))
	buf := make([]byte, 512)
	n, err := c.Read(buf)
	return err == nil && strings.HasPrefix(string(buf[:n]), "peer=")
}

// slirp4netns --ipv6: the command has IPv6 at once (no wait for SLAAC) and
// reaches the host's ::1 through fd00::2; resolv.conf lists fd00::3.
func TestSlirp4netnsIPv6(t *testing.T) {
	l, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Fatalf("host has no IPv6 loopback (::1): %v; enable it: sysctl -w net.ipv6.conf.lo.disable_ipv6=0", err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "host-ipv6-ok") })}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	port := l.Addr().(*net.TCPAddr).Port
	script := fmt.Sprintf(`curl -sS --max-time 3 "http://[fd00::2]:%d/"; echo; grep nameserver /etc/resolv.conf; read _`, port)
	r := runNet(t, []string{"--net=slirp4netns", "--ipv6", "--copy-up=/etc"}, script)
	if r.Code != 0 {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", r.Code, r.Stdout, r.Stderr)
	}
	for _, want := range []string{"host-ipv6-ok", "nameserver 10.0.2.3", "nameserver fd00::3"} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("missing %q in:\n%s", want, r.Stdout)
		}
	}
	checkHelperGone(t, r, "slirp4netns")
}

// If the helper cannot use the tap the driver pre-created (a future version
// might want other tap flags), the driver removes it and starts the helper
// on its own tap. The stand-in here refuses whenever tap0 already exists.
func TestSlirp4netnsFallbackWithoutPrecreatedTap(t *testing.T) {
	dir := TempDir(t)
	fake := filepath.Join(dir, "picky-slirp4netns")
	script := `#!/bin/sh
# Arguments end with PID TAPNAME; refuse a tap that already exists.
for a; do pid=$tap; tap=$a; done
if [ -n "$pid" ] && grep -q "$tap:" "/proc/$pid/net/dev" 2>/dev/null; then
	echo "refusing the existing $tap" >&2
	exit 1
fi
exec slirp4netns "$@"
`
	if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	r := runNet(t, []string{"--net=slirp4netns", "--slirp4netns-binary=" + fake, "--disable-host-loopback", "--debug"},
		`ip -4 -o addr show dev tap0; ip -d -o link show dev tap0; read _`)
	if r.Code != 0 {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", r.Code, r.Stdout, r.Stderr)
	}
	if !strings.Contains(r.Stdout, "inet 10.0.2.100/24") || strings.Contains(r.Stdout, "persist on") {
		t.Errorf("want tap0 configured and not persistent:\n%s", r.Stdout)
	}
	if !strings.Contains(r.Stderr, "refusing the existing tap0") {
		t.Errorf("the stand-in was never offered the pre-created tap:\n%s", r.Stderr)
	}
	checkHelperGone(t, r, "slirp4netns")
}

// A helper that dies before it is ready: unroot says why in one line (the
// helper's own words included), exits 1 and leaves nothing running.
func TestNetDriverHelperFailsToStart(t *testing.T) {
	dir := TempDir(t)
	for _, tc := range []struct{ net, flag string }{{"slirp4netns", "--slirp4netns-binary"}, {"pasta", "--pasta-binary"}} {
		t.Run(tc.net, func(t *testing.T) {
			fake := filepath.Join(dir, "broken-"+tc.net)
			script := "#!/bin/sh\ncase \"$1\" in --help) exec " + tc.net + " --help;; esac\necho 'cannot join the namespace: Operation not permitted' >&2\nexit 1\n"
			if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
				t.Fatal(err)
			}
			state := filepath.Join(dir, "state-"+tc.net)
			r := RunUser(t, 20*time.Second, "rootlesskit", "--state-dir="+state, "--disable-host-loopback", "--net="+tc.net, tc.flag+"="+fake, "true")
			if r.Code != 1 {
				t.Errorf("exit %d, want 1; stderr: %s", r.Code, r.Stderr)
			}
			want := "start " + tc.net + ": exited (exit status 1) before it was ready: cannot join the namespace: Operation not permitted"
			if lines := strings.Split(strings.TrimSpace(r.Stderr), "\n"); len(lines) != 1 || !strings.Contains(r.Stderr, want) {
				t.Errorf("stderr = %q, want one line containing %q", r.Stderr, want)
			}
			// unroot's child re-executes it with the same arguments, so
			// anything of this run names its state directory or the stand-in.
			for _, p := range UserProcesses(t) {
				cmdline, _ := os.ReadFile("/proc/" + p + "/cmdline")
				if bytes.Contains(cmdline, []byte(state)) || bytes.Contains(cmdline, []byte(fake)) {
					t.Errorf("process %s (%s) left running", p, bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '}))
				}
			}
		})
	}
}

// A helper that fails and whose --help then hangs is reported as not
// answering, within seconds, rather than as lacking an option.
func TestNetDriverHelpProbeHangs(t *testing.T) {
	dir := TempDir(t)
	for _, tc := range []struct{ net, flag string }{{"slirp4netns", "--slirp4netns-binary"}, {"pasta", "--pasta-binary"}} {
		t.Run(tc.net, func(t *testing.T) {
			fake := filepath.Join(dir, "hung-"+tc.net)
			script := "#!/bin/sh\ncase \"$1\" in --help) sleep 60; exit 0;; esac\necho \"unrecognized option '--disable-host-loopback'\" >&2\nexit 1\n"
			if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
				t.Fatal(err)
			}
			state := filepath.Join(dir, "state-"+tc.net)
			begin := time.Now()
			r := RunUser(t, 30*time.Second, "rootlesskit", "--state-dir="+state, "--disable-host-loopback", "--net="+tc.net, tc.flag+"="+fake, "true")
			took := time.Since(begin)
			if r.Code != 1 {
				t.Errorf("exit %d, want 1; stderr: %s", r.Code, r.Stderr)
			}
			if lines := strings.Split(strings.TrimSpace(r.Stderr), "\n"); len(lines) != 1 || !strings.Contains(r.Stderr, "did not answer") || strings.Contains(r.Stderr, "does not support") {
				t.Errorf("stderr = %q, want one line saying --help did not answer", r.Stderr)
			}
			if took > 15*time.Second {
				t.Errorf("gave up after %v, want a few seconds", took)
			}
			for _, p := range UserProcesses(t) {
				cmdline, _ := os.ReadFile("/proc/" + p + "/cmdline")
				if bytes.Contains(cmdline, []byte(state)) || bytes.Contains(cmdline, []byte(fake)) || bytes.Equal(cmdline, []byte("sleep\x0060\x00")) {
					t.Errorf("process %s (%s) left running", p, bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '}))
				}
			}
		})
	}
}

// A helper killed behind unroot's back is restarted, and the command's
// network works again with the same address.
func TestNetDriverHelperRestarted(t *testing.T) {
	for _, net := range []string{"slirp4netns", "pasta"} {
		t.Run(net, func(t *testing.T) {
			port := hostHTTP(t)
			var restarted, killed int
			script := fmt.Sprintf(`read x; ip -4 -o addr show dev tap0; curl -sS --max-time 5 http://10.0.2.2:%d/; echo`, port)
			r := runNetDuring(t, []string{"--net=" + net, "--copy-up=/etc", "--pidns"}, script, func(state string) {
				for _, p := range descendants(os.Getpid()) {
					if c := comm(p); c == net || (net == "pasta" && strings.HasPrefix(c, "passt")) {
						killed = p
					}
				}
				if killed == 0 {
					t.Errorf("no %s process found", net)
					return
				}
				_ = syscall.Kill(killed, syscall.SIGKILL)
				deadline := time.Now().Add(5 * time.Second)
				for time.Now().Before(deadline) {
					for _, p := range descendants(os.Getpid()) {
						if c := comm(p); p != killed && (c == net || (net == "pasta" && strings.HasPrefix(c, "passt"))) {
							restarted = p
						}
					}
					if restarted != 0 {
						break
					}
					time.Sleep(10 * time.Millisecond)
				}
				// The command goes on once the new helper is ready: the
				// health block says so.
				waitHealth(t, state, func(h api.NetworkHealth) bool { return h.Restarts == 1 && h.State == "up" })
			})
			if r.Code != 0 {
				t.Fatalf("exit %d\nstdout: %s\nstderr: %s", r.Code, r.Stdout, r.Stderr)
			}
			if restarted == 0 {
				t.Fatalf("%s was not restarted within 5s\nstderr: %s", net, r.Stderr)
			}
			if !strings.Contains(r.Stdout, "inet 10.0.2.100/24") || !strings.Contains(r.Stdout, "host-loopback-ok") {
				t.Errorf("network after the restart:\n%s\nstderr: %s", r.Stdout, r.Stderr)
			}
			if !strings.Contains(r.Stderr, net+" restarted") {
				t.Errorf("restart not reported:\n%s", r.Stderr)
			}
			checkHelperGone(t, r, net)
		})
	}
}

// slirp4netns or pasta missing from PATH: one line naming the package to
// install and the drivers that would work instead, exit 1.
func TestNetDriverMissingHelper(t *testing.T) {
	for _, tc := range []struct{ net, want string }{
		{"slirp4netns", "slirp4netns not found in PATH: install it (apt-get install slirp4netns), or use --net=pasta"},
		{"pasta", "pasta not found in PATH: install it (apt-get install passt), or use --net=slirp4netns"},
	} {
		t.Run(tc.net, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			cmd := UserCmd(t, ctx, "rootlesskit", "--disable-host-loopback", "--net="+tc.net, "true")
			for i, e := range cmd.Env {
				if strings.HasPrefix(e, "PATH=") {
					cmd.Env[i] = "PATH=" + Bin // unroot's own links only
				}
			}
			r := Run(t, cmd)
			if r.Code != 1 {
				t.Errorf("exit %d, want 1; stderr: %s", r.Code, r.Stderr)
			}
			if lines := strings.Split(strings.TrimSpace(r.Stderr), "\n"); len(lines) != 1 || !strings.Contains(r.Stderr, tc.want) {
				t.Errorf("stderr = %q, want one line containing %q", r.Stderr, tc.want)
			}
		})
	}
}

// SIGKILL of unroot must take the network helper down with it.
func TestNetDriverHelperDiesWithUnroot(t *testing.T) {
	for _, net := range []string{"slirp4netns", "pasta"} {
		t.Run(net, func(t *testing.T) {
			state := filepath.Join(TempDir(t), "state")
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := UserCmd(t, ctx, "rootlesskit", "--state-dir="+state, "--net="+net, "sleep", "60")
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			WaitFile(t, filepath.Join(state, "child_pid"), 20*time.Second)
			tree := descendants(cmd.Process.Pid)
			_ = syscall.Kill(cmd.Process.Pid, syscall.SIGKILL)
			_ = cmd.Wait()
			deadline := time.Now().Add(10 * time.Second)
			for len(running(tree)) > 0 {
				if time.Now().After(deadline) {
					t.Fatalf("still running 10s after unroot was SIGKILLed: %v", running(tree))
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}

// Bad network flags fail fast with one line and leave nothing behind.
func TestNetDriverBadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--net=slirp4netns", "--cidr=10.0.2.100/24"}, "cidr must be like 10.0.2.0/24, not like 10.0.2.100/24"},
		{[]string{"--net=slirp4netns", "--mtu=65522"}, "mtu must be <= 65521"},
		{[]string{"--net=pasta", "--ifname=a/b"}, "must not contain '/'"},
		{[]string{"--net=slirp4netns", "--slirp4netns-binary=/nonexistent/slirp4netns"}, "slirp4netns binary /nonexistent/slirp4netns: no such file or directory: fix --slirp4netns-binary"},
		{[]string{"--net=pasta", "--pasta-binary=/nonexistent/pasta"}, "pasta binary /nonexistent/pasta: no such file or directory: fix --pasta-binary"},
		{[]string{"--net=slirp4netns", "--detach-netns", "--slirp4netns-sandbox=true"}, "--slirp4netns-sandbox=true cannot be used with --detach-netns"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			state := filepath.Join(TempDir(t), "state")
			// --disable-host-loopback keeps RootlessKit's warning about it out of stderr.
			args := append([]string{"--state-dir=" + state, "--disable-host-loopback"}, tc.args...)
			r := RunUser(t, 20*time.Second, "rootlesskit", append(args, "true")...)
			if r.Code != 1 {
				t.Errorf("exit %d, want 1; stderr: %s", r.Code, r.Stderr)
			}
			for _, name := range []string{"child_pid", "netns", ".s4nn.sock", "api.sock"} {
				if fileExists(filepath.Join(state, name)) {
					t.Errorf("%s left in the state directory", name)
				}
			}
			lines := strings.Split(strings.TrimSpace(r.Stderr), "\n")
			if !strings.Contains(r.Stderr, tc.want) || len(lines) != 1 {
				t.Errorf("stderr = %q, want one line containing %q", r.Stderr, tc.want)
			}
			if strings.Contains(r.Stderr, "goroutine ") {
				t.Errorf("stack trace in stderr: %s", r.Stderr)
			}
		})
	}
}
