package e2e

import (
	"bufio"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/unroot/unroot/internal/lograte"
	"github.com/unroot/unroot/internal/testutil"
)

var fwClientBin = &goBinary{name: "fwdclient", pkg: "./testdata/fwdclient"}

// fwClient builds testdata/fwdclient into Bin, where the test user can run it.
func fwClient(t *testing.T) string { return fwClientBin.path(t) }

// fwServices are host services of the test's own: a TCP and a UDP one on
// the host's loopback and one on a unix socket the test user may open, each
// answering with its name and the message.
type fwServices struct {
	tcpPort, udpPort int
	sock             string
}

func startFwServices(t *testing.T) fwServices {
	t.Helper()
	var s fwServices
	serve := func(ln net.Listener, name string) {
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					c.SetDeadline(time.Now().Add(10 * time.Second))
					line, err := bufio.NewReader(c).ReadString('\n')
					if err == nil {
						io.WriteString(c, name+":"+line)
					}
				}()
			}
		}()
	}
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serve(tl, "tcp")
	s.tcpPort = tl.Addr().(*net.TCPAddr).Port
	dir := TempDir(t)
	s.sock = filepath.Join(dir, "svc.sock")
	ul, err := net.Listen("unix", s.sock)
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(s.sock, 0o777)
	serve(ul, "unix")
	uc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { uc.Close() })
	go func() {
		b := make([]byte, 2048)
		for {
			n, from, err := uc.ReadFromUDPAddrPort(b)
			if err != nil {
				return
			}
			uc.WriteToUDPAddrPort(append([]byte("udp:"), b[:n]...), from)
		}
	}()
	s.udpPort = uc.LocalAddr().(*net.UDPAddr).Port
	return s
}

// A host service given with --forward answers inside on its port, at the
// namespace's 127.0.0.1, ::1 and tap address, for every network driver:
// TCP, UDP and a host unix socket (to a TCP port inside).
func TestForward(t *testing.T) {
	t.Parallel()
	cl := fwClient(t)
	svc := startFwServices(t)
	for _, net := range []string{"slirp4netns", "pasta", "netstack", "none"} {
		script := cl + " tcp 127.0.0.1:5000 a && " + cl + " tcp [::1]:5000 b && " + cl + " udp 127.0.0.1:53 c && " + cl + " tcp 127.0.0.1:5432 d"
		want := "tcp:a\ntcp:b\nudp:c\nunix:d\n"
		if net != "none" {
			script += " && " + cl + " tcp @tap0:5000 e"
			want += "tcp:e\n"
		}
		r := RunUser(t, 30*time.Second, "unroot", "run", "--net="+net,
			"--forward=127.0.0.1:"+strconv.Itoa(svc.tcpPort)+":5000/tcp",
			"--forward=127.0.0.1:"+strconv.Itoa(svc.udpPort)+":53/udp",
			"--forward="+svc.sock+":5432",
			"sh", "-c", script)
		if r.Code != 0 || r.Stdout != want {
			t.Errorf("--net=%s: exit %d, stdout %q, stderr %q; want %q", net, r.Code, r.Stdout, r.Stderr, want)
		}
	}
	// The forwards listen before the command starts: one that connects
	// first thing finds them (a connection waits in the backlog until
	// unroot relays it).
	for _, net := range []string{"slirp4netns", "pasta", "netstack", "none"} {
		for i := range 3 {
			r := RunUser(t, 30*time.Second, "unroot", "run", "--net="+net,
				"--forward=127.0.0.1:"+strconv.Itoa(svc.tcpPort)+":5000/tcp",
				"--forward=127.0.0.1:"+strconv.Itoa(svc.udpPort)+":53/udp",
				cl, "tcp", "127.0.0.1:5000", "first")
			if r.Code != 0 || r.Stdout != "tcp:first\n" {
				t.Errorf("--net=%s, run %d: a command that connects at once: exit %d, %q, %q", net, i, r.Code, r.Stdout, r.Stderr)
			}
		}
	}
	// Bad specs and --net=host are refused in one line.
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--net=host", "--port-driver=none", "--forward=127.0.0.1:1:2", "true"}, "unroot: --forward needs a network namespace"},
		{[]string{"--forward=5000:5000", "true"}, "unroot: --forward: forward \"5000:5000\""},
		{[]string{"--forward=0.0.0.0:1:2", "true"}, "not one service's address"},
		{[]string{"--forward=127.0.0.1:1:2", "--forward=127.0.0.1:3:2/tcp", "true"}, "port tcp/2 inside is forwarded twice"},
		// pasta would publish the forward's port on every host address.
		{[]string{"--net=pasta", "--port-driver=implicit", "--forward=127.0.0.1:1:2", "true"}, "unroot: --forward cannot be used with pasta's implicit port forwarding"},
	} {
		r := RunUser(t, 10*time.Second, "unroot", append([]string{"run"}, tt.args...)...)
		if r.Code != 1 || !strings.Contains(r.Stderr, tt.want) || strings.Count(strings.TrimSpace(r.Stderr), "\n") != 0 {
			t.Errorf("unroot run %v: exit %d, stderr %q; want 1 and one line with %q", tt.args, r.Code, r.Stderr, tt.want)
		}
	}
}

// Forwards are added and removed while the command runs, through the API
// (unroot ports forward), and a removed one no longer answers.
func TestForwardAtRunTime(t *testing.T) {
	t.Parallel()
	cl := fwClient(t)
	svc := startFwServices(t)
	state, pid, _, _ := lcStart(t, "unroot", "run", "--net=netstack", "sleep", "infinity")
	inside := func(args ...string) (string, error) {
		out, err := exec.Command("nsenter", append([]string{"-t", strconv.Itoa(pid), "-n", cl}, args...)...).CombinedOutput()
		return string(out), err
	}
	r := RunUser(t, 10*time.Second, "unroot", "ports", "--state-dir="+state, "forward", "add", "127.0.0.1:"+strconv.Itoa(svc.tcpPort)+":6000/tcp", svc.sock+":6001")
	if r.Code != 0 || r.Stdout != "1\n2\n" {
		t.Fatalf("forward add: exit %d, %q, %q", r.Code, r.Stdout, r.Stderr)
	}
	if out, err := inside("tcp", "127.0.0.1:6000", "x"); err != nil || out != "tcp:x\n" {
		t.Errorf("added tcp forward: %q, %v", out, err)
	}
	if out, err := inside("tcp", "127.0.0.1:6001", "y"); err != nil || out != "unix:y\n" {
		t.Errorf("added unix forward: %q, %v", out, err)
	}
	r = RunUser(t, 10*time.Second, "unroot", "ports", "--state-dir="+state, "forward", "list")
	if r.Code != 0 || !strings.Contains(r.Stdout, "127.0.0.1:"+strconv.Itoa(svc.tcpPort)) || !strings.Contains(r.Stdout, svc.sock) {
		t.Errorf("forward list: exit %d, %q, %q", r.Code, r.Stdout, r.Stderr)
	}
	r = RunUser(t, 10*time.Second, "unroot", "ports", "--state-dir="+state, "forward", "add", "127.0.0.1:1:6000/tcp")
	if r.Code != 1 || !strings.Contains(r.Stderr, "conflict with ID 1") {
		t.Errorf("duplicate forward: exit %d, %q", r.Code, r.Stderr)
	}
	r = RunUser(t, 10*time.Second, "unroot", "ports", "--state-dir="+state, "forward", "rm", "1")
	if r.Code != 0 || r.Stdout != "1\n" {
		t.Errorf("forward rm: exit %d, %q, %q", r.Code, r.Stdout, r.Stderr)
	}
	if out, err := inside("tcp", "127.0.0.1:6000", "z"); err == nil {
		t.Errorf("removed forward still answers: %q", out)
	}
	// With pasta's implicit port forwarding the API refuses forwards: pasta
	// would publish their ports on the host.
	state, _, _, _ = lcStart(t, "unroot", "run", "--net=pasta", "--port-driver=implicit", "sleep", "infinity")
	r = RunUser(t, 10*time.Second, "unroot", "ports", "--state-dir="+state, "forward", "add", "127.0.0.1:"+strconv.Itoa(svc.tcpPort)+":6002/tcp")
	if r.Code != 1 || !strings.Contains(r.Stderr, "reverse forwarding is off: pasta's implicit port forwarding") {
		t.Errorf("forward add with implicit ports: exit %d, %q, %q", r.Code, r.Stdout, r.Stderr)
	}
}

// A forward to a host socket that does not exist yet is made, with one
// warning that names the fix (at start-up for --forward, in the answer for
// `unroot ports forward add`), and works once the service creates its
// socket. Connections that fail meanwhile, to the socket or to a host port
// where nothing listens, are logged as warnings, rate-limited.
func TestForwardMissingSocket(t *testing.T) {
	t.Parallel()
	cl := fwClient(t)
	dir := TempDir(t)
	sock := filepath.Join(dir, "later.sock")
	down := testutil.ClosedPort(t) // refuses connections while the test runs
	state, pid, cmd, wait := lcStart(t, "unroot", "run", "--net=netstack",
		"--forward="+sock+":5432", "--forward=127.0.0.1:"+strconv.Itoa(down)+":5000", "sleep", "infinity")
	inside := func(args ...string) (string, error) {
		out, err := exec.Command("nsenter", append([]string{"-t", strconv.Itoa(pid), "-n", cl}, args...)...).CombinedOutput()
		return string(out), err
	}
	const tries = 4
	began := time.Now()
	for range tries {
		if out, err := inside("tcp", "127.0.0.1:5432", "early"); err == nil {
			t.Fatalf("forward to a missing socket answered %q", out)
		}
		if out, err := inside("tcp", "127.0.0.1:5000", "early"); err == nil {
			t.Fatalf("forward to a host port where nothing listens answered %q", out)
		}
	}
	// Every failure fell within one interval of the launcher's rate limit
	// only if the loop was that quick (not so on a loaded machine).
	oneInterval := time.Since(began) < lograte.DefaultEvery
	// The service comes up: the forward made before it now reaches it.
	ul, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(sock, 0o777)
	t.Cleanup(func() { ul.Close() })
	go func() {
		for {
			c, err := ul.Accept()
			if err != nil {
				return
			}
			line, _ := bufio.NewReader(c).ReadString('\n')
			io.WriteString(c, "unix:"+line)
			c.Close()
		}
	}()
	if out, err := inside("tcp", "127.0.0.1:5432", "late"); err != nil || out != "unix:late\n" {
		t.Errorf("once the socket exists: %q, %v; want unix:late", out, err)
	}
	// Through the API: the forward is made, and the warning shown to the caller.
	missing := filepath.Join(dir, "missing.sock")
	r := RunUser(t, 10*time.Second, "unroot", "ports", "--state-dir="+state, "forward", "add", missing+":5433")
	wantAdd := "unroot: warning: forward " + missing + ":5433/tcp: no socket at " + missing + " yet"
	if r.Code != 0 || r.Stdout != "3\n" || !strings.HasPrefix(r.Stderr, wantAdd) || strings.Count(r.Stderr, "\n") != 1 {
		t.Errorf("forward add to a missing socket: exit %d, %q, %q; want ID 3 and one line %q...", r.Code, r.Stdout, r.Stderr, wantAdd)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	res := wait()
	count := func(s string) int { return strings.Count(res.Stderr, s) }
	if n := count("no socket at " + sock + " yet: connections to port 5432 inside are reset until a service listens there; start the service, or fix the path"); n != 1 {
		t.Errorf("%d start-up warnings of the missing socket, want 1:\n%s", n, res.Stderr)
	}
	if n := count("no socket at " + missing + " yet"); n != 1 {
		t.Errorf("%d launcher warnings of the socket added through the API, want 1:\n%s", n, res.Stderr)
	}
	for what, fix := range map[string]string{
		"connecting to the host socket failed":  "start the service that listens on " + sock,
		"connecting to the host service failed": "start the service at 127.0.0.1:" + strconv.Itoa(down),
	} {
		n := count(what)
		if n < 1 || count(fix) != n {
			t.Errorf("%q: %d warnings (%d with the fix %q) for %d failures; want at least one, each with the fix:\n%s", what, n, count(fix), fix, tries, res.Stderr)
		}
		if oneInterval && n != 1 {
			t.Errorf("%q: %d warnings for %d failures within %v; want one (rate-limited):\n%s", what, n, tries, lograte.DefaultEvery, res.Stderr)
		}
	}
}
