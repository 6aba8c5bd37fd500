package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var ptServerBin = &goBinary{name: "portserver", pkg: "./testdata/portserver"}

// ptServer builds testdata/portserver into Bin, where the test user can run it.
func ptServer(t *testing.T) string { return ptServerBin.path(t) }

var (
	ptGivenMu sync.Mutex
	ptGiven   = map[int]bool{}
)

// ptPorts returns n ports free for TCP and UDP on the host a moment ago,
// and never one it returned before. They lie below the kernel's ephemeral
// range (ip_local_port_range), so no bind to port 0 and no outgoing
// connection, of this test or any other running meanwhile, gets one of
// them between now and the test's own bind.
func ptPorts(t *testing.T, n int) []int {
	t.Helper()
	ptGivenMu.Lock()
	defer ptGivenMu.Unlock()
	lo, hi := ptRange(t)
	var ports []int
	for tries := 0; len(ports) < n; tries++ {
		if tries > 10000 {
			t.Fatalf("no free port in %d-%d after %d tries", lo, hi, tries)
		}
		p := lo + rand.IntN(hi-lo)
		if ptGiven[p] {
			continue
		}
		ln, err := net.Listen("tcp", fmt.Sprintf(":%d", p))
		if err != nil {
			continue
		}
		pc, err := net.ListenPacket("udp", fmt.Sprintf(":%d", p))
		ln.Close()
		if err != nil {
			continue
		}
		pc.Close()
		ptGiven[p] = true
		ports = append(ports, p)
	}
	return ports
}

// ptRange is where ptPorts picks: from 10000 up to the start of the
// ephemeral range.
func ptRange(t *testing.T) (lo, hi int) {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b))
	first, err := strconv.Atoi(f[0])
	if len(f) != 2 || err != nil || first < 11000 {
		t.Fatalf("ip_local_port_range %q leaves no room below it for the tests' ports: set it to start at 32768 or more", b)
	}
	return 10000, first
}

func ptAddr(ip string, p int) string { return net.JoinHostPort(ip, strconv.Itoa(p)) }

// ptCurl fetches http://ADDR/ with curl (from local, if set) and returns the body.
func ptCurl(t *testing.T, addr, local string) (string, error) {
	t.Helper()
	args := []string{"-sS", "--max-time", "5", "http://" + addr + "/"}
	if local != "" {
		args = append([]string{"--interface", local}, args...)
	}
	out, err := exec.Command("curl", args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// ptWaitCurl gives a published port about five seconds to answer, and
// reports whether it did.
func ptWaitCurl(t *testing.T, addr string) bool {
	t.Helper()
	for i := 0; ; i++ {
		if _, err := ptCurl(t, addr, ""); err == nil {
			return true
		}
		if i > 100 {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func ptMustCurl(t *testing.T, addr, local, wantPeer string) {
	t.Helper()
	got, err := ptCurl(t, addr, local)
	if err != nil || !strings.HasPrefix(got, "peer="+wantPeer) {
		t.Errorf("curl http://%s/ (from %q) = %q, %v; want peer=%s...", addr, local, got, err, wantPeer)
	}
}

// ptTalk checks the greet/echo/half-close exchange and returns the peer.
func ptTalk(t *testing.T, addr string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("read greeting via %s: %v", addr, err)
	}
	c.Write([]byte("ping"))
	c.(*net.TCPConn).CloseWrite()
	rest, err := io.ReadAll(r)
	if err != nil || string(rest) != "pingbye" {
		t.Fatalf("via %s after half-close: %q, %v; want pingbye", addr, rest, err)
	}
	return strings.TrimPrefix(strings.TrimSpace(line), "peer=")
}

func ptUDP(t *testing.T, network, addr, local, msg string) string {
	t.Helper()
	var laddr *net.UDPAddr
	if local != "" {
		laddr = &net.UDPAddr{IP: net.ParseIP(local)}
	}
	raddr, err := net.ResolveUDPAddr(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.DialUDP(network, laddr, raddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 2048)
	for range 20 {
		c.Write([]byte(msg))
		c.SetReadDeadline(time.Now().Add(250 * time.Millisecond))
		if n, err := c.Read(buf); err == nil {
			return string(buf[:n])
		}
	}
	t.Errorf("no UDP answer via %s from %q", addr, local)
	return ""
}

// ptClientAddr gives the host a non-loopback address of the test's own,
// on one end of a veth pair the test makes and removes.
func ptClientAddr(t *testing.T) string {
	t.Helper()
	a := fmt.Sprintf("urt%d", rand.IntN(1e6))
	ip := fmt.Sprintf("198.18.%d.%d", rand.IntN(250)+1, rand.IntN(250)+1)
	for _, args := range [][]string{
		{"link", "add", a, "type", "veth", "peer", "name", a + "p"},
		{"addr", "add", ip + "/32", "dev", a},
		{"link", "set", a, "up"},
		{"link", "set", a + "p", "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			exec.Command("ip", "link", "del", a).Run()
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
		if args[1] == "add" && args[0] == "link" {
			t.Cleanup(func() { exec.Command("ip", "link", "del", a).Run() })
		}
	}
	return ip
}

// ptRootlessctlV3 returns RootlessKit v3's rootlessctl, installing it
// (outside the repository) if needed.
func ptRootlessctlV3(t *testing.T) string {
	t.Helper()
	const p = "/opt/rk3/rootlessctl"
	if fileExists(p) {
		return p
	}
	cmd := exec.Command("go", "install", "github.com/rootless-containers/rootlesskit/v3/cmd/rootlessctl@v3.3.0")
	cmd.Env = append(os.Environ(), "GOBIN=/opt/rk3")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("install RootlessKit v3 rootlessctl: %v: %s", err, out)
	}
	return p
}

func TestPortsBuiltin(t *testing.T) {
	t.Parallel()
	srv := ptServer(t)
	ps := ptPorts(t, 10)
	spec := func(f string, a ...any) string { return "--publish=" + fmt.Sprintf(f, a...) }
	// An iperf3 server serves one test at a time and turns the next client
	// away while it winds the last one up, so TCP and UDP get one each; the
	// port server starts (and answers ptWaitCurl) once both listen.
	script := `iperf3 -s -p 5201 >/dev/null 2>&1 & iperf3 -s -p 5202 >/dev/null 2>&1 &
for i in $(seq 200); do [ "$(ss -Htln '( sport = :5201 or sport = :5202 )' | wc -l)" -ge 2 ] && break; sleep 0.05; done
exec "$0" -http [::]:8000 -udp [::]:8001 -tcp [::]:8002`
	state, _, cmd, wait := lcStart(t, "unroot", "run", "--net=slirp4netns",
		spec("127.0.0.1:%d:8000/tcp", ps[0]),
		spec("[::1]:%d:8000/tcp6", ps[1]),
		spec("127.0.0.1:%d:[::1]:8000/tcp", ps[2]),
		spec("[::1]:%d:127.0.0.1:8000/tcp6", ps[3]),
		spec("127.0.0.1:%d:8001/udp,[::1]:%d:[::1]:8001/udp6", ps[4], ps[5]),
		spec("%d:8002/tcp4", ps[6]),
		spec("%d:5201/tcp", ps[7]),
		spec("%d:5202/tcp", ps[9]),
		spec("%d:5202/udp", ps[9]),
		"--", "sh", "-c", script, srv)
	sock := filepath.Join(state, "api.sock")
	// The server may take a moment after child_pid.
	ptWaitCurl(t, ptAddr("127.0.0.1", ps[0]))

	t.Run("tcp", func(t *testing.T) { ptCheckTCP(t, ps) })
	t.Run("udp", func(t *testing.T) { ptCheckUDP(t, ps) })
	t.Run("iperf3", func(t *testing.T) { ptCheckIperf3(t, ps[7], ps[9]) })
	t.Run("client address", func(t *testing.T) { ptCheckClientAddress(t, state, ps) })
	t.Run("clients", func(t *testing.T) { ptCheckClients(t, state, sock, ps[8]) })
	t.Run("bad requests", func(t *testing.T) { ptCheckBadRequests(t, state, sock, ps) })
	syscall.Kill(cmd.Process.Pid, syscall.SIGTERM)
	r := wait()
	if !strings.Contains(r.Stdout, "http peer=198.18.") {
		t.Errorf("the server's log lacks the non-loopback client address:\n%s\nlauncher stderr:\n%s", r.Stdout, r.Stderr)
	}
	if fileExists(sock) || fileExists(state) {
		t.Errorf("%s left behind", state)
	}
	for _, p := range []int{ps[0], ps[4]} {
		if _, err := ptCurl(t, ptAddr("127.0.0.1", p), ""); err == nil {
			t.Errorf("port %d answers after the launcher exited", p)
		}
	}
}

// ptCheckTCP: each TCP port answers on its parent address only, across
// address families (v4 parent to v6 child and back).
func ptCheckTCP(t *testing.T, ps []int) {
	ptMustCurl(t, ptAddr("127.0.0.1", ps[0]), "", "127.0.0.1:")
	ptMustCurl(t, ptAddr("::1", ps[1]), "", "[::1]:")
	ptMustCurl(t, ptAddr("127.0.0.1", ps[2]), "", "[::1]:") // v4 parent, v6 child
	ptMustCurl(t, ptAddr("::1", ps[3]), "", "127.0.0.1:")   // v6 parent, v4 child
	if _, err := ptCurl(t, ptAddr("::1", ps[0]), ""); err == nil {
		t.Errorf("127.0.0.1:%d/tcp answered on ::1", ps[0])
	}
	if peer := ptTalk(t, ptAddr("127.0.0.1", ps[6])); !strings.HasPrefix(peer, "127.0.0.1:") {
		t.Errorf("tcp4 peer = %s", peer)
	}
	if c, err := net.DialTimeout("tcp6", ptAddr("::1", ps[6]), time.Second); err == nil {
		c.Close()
		t.Errorf("tcp4 port %d answered on ::1", ps[6])
	}
}

// ptCheckUDP: the UDP ports answer, over IPv4 and IPv6.
func ptCheckUDP(t *testing.T, ps []int) {
	if got := ptUDP(t, "udp4", ptAddr("127.0.0.1", ps[4]), "", "hi"); !strings.HasPrefix(got, "peer=127.0.0.1:") || !strings.HasSuffix(got, " hi") {
		t.Errorf("udp = %q", got)
	}
	if got := ptUDP(t, "udp6", ptAddr("::1", ps[5]), "", "hi6"); !strings.HasPrefix(got, "peer=[::1]:") || !strings.HasSuffix(got, " hi6") {
		t.Errorf("udp6 = %q", got)
	}
}

// ptCheckIperf3: iperf3's TCP and UDP traffic gets through (not how fast:
// bench/ measures that), to the servers published on tcpPort and udpPort.
func ptCheckIperf3(t *testing.T, tcpPort, udpPort int) {
	iperf3Through(t, "-c", "127.0.0.1", "-p", strconv.Itoa(tcpPort), "-t", "2")
	// UDP at a rate and datagram size an overlay uses (VXLAN frames of
	// about 1.4 KB); a loaded machine may lose many, but some arrive.
	iperf3Through(t, "-c", "127.0.0.1", "-p", strconv.Itoa(udpPort), "-t", "2", "-u", "-b", "300M", "-l", "1400")
}

// ptCheckClientAddress: a non-loopback client's address reaches the server
// through TCP ports (also to a non-loopback child IP); loopback clients
// and UDP keep the loopback address.
func ptCheckClientAddress(t *testing.T, state string, ps []int) {
	ip := ptClientAddr(t)
	ptMustCurl(t, ptAddr("127.0.0.1", ps[0]), ip, ip+":")
	if peer := ptTalk(t, ptAddr("127.0.0.1", ps[6])); !strings.HasPrefix(peer, "127.0.0.1:") {
		t.Errorf("tcp4 from loopback: peer %s", peer)
	}
	// UDP keeps no client address by default (docs/ports.md), so a
	// server on a wildcard address still gets its replies through.
	if got := ptUDP(t, "udp4", ptAddr("127.0.0.1", ps[4]), ip, "hi"); !strings.HasPrefix(got, "peer=127.0.0.1:") || !strings.HasSuffix(got, " hi") {
		t.Errorf("udp from %s: server saw %q", ip, got)
	}
	ptMustCurl(t, ptAddr("127.0.0.1", ps[0]), "", "127.0.0.1:") // loopback stays loopback
	// A non-loopback child IP: replies come back by connection mark.
	r := RunUser(t, 10*time.Second, "unroot", "ports", "--state-dir="+state, "add", fmt.Sprintf("127.0.0.1:%d:10.0.2.100:8000/tcp", ps[8]))
	if r.Code != 0 {
		t.Fatalf("add a port to 10.0.2.100: %q", r.Stderr)
	}
	ptMustCurl(t, ptAddr("127.0.0.1", ps[8]), ip, ip+":")
	ptMustCurl(t, ptAddr("127.0.0.1", ps[8]), "", "10.0.2.100:")
	RunUser(t, 10*time.Second, "unroot", "ports", "--state-dir="+state, "remove", strings.TrimSpace(r.Stdout))
}

// ptCheckClients: unroot ports and every rootlessctl (python, v1, v3) add,
// list and remove port p through the API socket.
func ptCheckClients(t *testing.T, state, sock string, p int) {
	v3 := ptRootlessctlV3(t)
	for i, ctl := range [][]string{
		{"unroot", "ports", "--state-dir=" + state},
		{"rootlessctl", "--socket", sock},
		{"/usr/bin/rootlessctl", "--socket", sock},
		{v3, "--socket", sock},
	} {
		name, pre := ctl[0], ctl[1:]
		add, list, rm := "add-ports", "list-ports", "remove-ports"
		spec := fmt.Sprintf("127.0.0.1:%d:8000/tcp", p)
		if name == "unroot" {
			add, list, rm = "add", "list", "remove"
			if i == 0 {
				spec = fmt.Sprintf("127.0.0.1:%d:8000", p) // lenient: proto defaults to tcp
			}
		}
		r := RunUser(t, 10*time.Second, name, append(pre, add, spec)...)
		id := strings.TrimSpace(r.Stdout)
		if r.Code != 0 || id == "" {
			t.Errorf("%s %s: exit %d, %q, %q", name, add, r.Code, r.Stdout, r.Stderr)
			continue
		}
		r = RunUser(t, 10*time.Second, name, append(pre, list)...)
		if r.Code != 0 || !strings.Contains(r.Stdout, strconv.Itoa(p)) {
			t.Errorf("%s %s: exit %d, %q, %q", name, list, r.Code, r.Stdout, r.Stderr)
		}
		if header, _, _ := strings.Cut(r.Stdout, "\n"); strings.HasSuffix(name, "rootlessctl") && strings.Join(strings.Fields(header), " ") != "ID PROTO PARENTIP PARENTPORT CHILDIP CHILDPORT" {
			t.Errorf("%s list-ports header: %q", name, r.Stdout)
		}
		ptMustCurl(t, ptAddr("127.0.0.1", p), "", "127.0.0.1:")
		r = RunUser(t, 10*time.Second, name, append(pre, rm, id)...)
		if r.Code != 0 || strings.TrimSpace(r.Stdout) != id {
			t.Errorf("%s %s %s: exit %d, %q, %q", name, rm, id, r.Code, r.Stdout, r.Stderr)
		}
		if _, err := ptCurl(t, ptAddr("127.0.0.1", p), ""); err == nil {
			t.Errorf("port %d still answers after %s %s", p, name, rm)
		}
		r = RunUser(t, 10*time.Second, name, append(pre, rm, id)...)
		if r.Code != 1 || !strings.Contains(r.Stderr, "unknown id: "+id) {
			t.Errorf("%s %s %s again: exit %d, stderr %q; want 1 and unknown id", name, rm, id, r.Code, r.Stderr)
		}
	}
	r := RunUser(t, 10*time.Second, "rootlessctl", "--socket", sock, "info")
	if r.Code != 0 || !strings.Contains(r.Stdout, "- REST API version: 1.1.3") || !strings.Contains(r.Stdout, "- Port Driver: builtin") {
		t.Errorf("rootlessctl info: %q %q", r.Stdout, r.Stderr)
	}
	r = RunUser(t, 10*time.Second, v3, "--socket", sock, "info", "--json")
	if r.Code != 0 || !strings.Contains(r.Stdout, `"driver": "builtin"`) {
		t.Errorf("v3 rootlessctl info --json: %q %q", r.Stdout, r.Stderr)
	}
	r = RunUser(t, 10*time.Second, "rootlessctl", "list-ports")
	if r.Code != 1 || strings.TrimSpace(r.Stderr) != "error: please specify --socket or set $ROOTLESSKIT_STATE_DIR" {
		t.Errorf("rootlessctl without a socket: exit %d, %q", r.Code, r.Stderr)
	}
}

// ptCheckBadRequests: bad API requests and specs get 400 and one clear
// line, and leave every published port working.
func ptCheckBadRequests(t *testing.T, state, sock string, ps []int) {
	for _, c := range []struct {
		method, path, body string
		want               string
	}{
		{"POST", "/v1/ports", `{"proto":"tcp",`, `{"message":"unexpected EOF: send a port spec as JSON`},
		{"POST", "/v1/ports", `{"proto":"sctp","parentPort":1,"childPort":1}`, "not supported"},
		{"POST", "/v1/ports", `{"proto":"tcp","parentPort":0,"childPort":1}`, "invalid parentPort 0"},
		{"POST", "/v1/ports", `{"proto":"tcp","parentPort":1,"childPort":70000}`, "invalid childPort 70000"},
		{"POST", "/v1/ports", `{"proto":"tcp","parentIP":"1.2.3.4.5","parentPort":1,"childPort":1}`, "invalid parentIP"},
		{"POST", "/v1/ports", fmt.Sprintf(`{"proto":"tcp","parentIP":"127.0.0.1","parentPort":%d,"childPort":1}`, ps[0]), "conflict with ID 1"},
		{"POST", "/v1/ports", fmt.Sprintf(`{"proto":"tcp6","parentIP":"::1","parentPort":%d,"childPort":1}`, ps[6]), ""}, // tcp4 and tcp6 coexist
		{"DELETE", "/v1/ports/999", "", `{"message":"unknown id: 999"}`},
		{"DELETE", "/v1/ports/x", "", "bad id x"},
	} {
		r := RunUser(t, 10*time.Second, "curl", "-sS", "-w", "\n%{http_code}", "--unix-socket", sock, "-X", c.method, "-d", c.body, "http://rootlesskit"+c.path)
		out := strings.TrimSpace(r.Stdout)
		i := strings.LastIndexByte(out, '\n')
		body, code := strings.TrimSpace(out[:max(i, 0)]), out[i+1:]
		if c.want == "" {
			if code != "201" {
				t.Errorf("%s %s %s: %s %s", c.method, c.path, c.body, code, body)
			}
			continue
		}
		if code != "400" || !strings.Contains(body, c.want) || !strings.HasPrefix(body, `{"message":`) {
			t.Errorf("%s %s %s: %s %q; want 400 with %q", c.method, c.path, c.body, code, body, c.want)
		}
	}
	if b, _ := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start"); strings.TrimSpace(string(b)) != "0" {
		r := RunUser(t, 10*time.Second, "unroot", "ports", "--state-dir="+state, "add", "0.0.0.0:1:8000/tcp")
		if r.Code != 1 || !strings.Contains(r.Stderr, "sudo sysctl net.ipv4.ip_unprivileged_port_start=1") || !strings.Contains(r.Stderr, "sudo setcap cap_net_bind_service=ep") || strings.Count(strings.TrimSpace(r.Stderr), "\n") != 0 {
			t.Errorf("privileged port: exit %d, stderr %q", r.Code, r.Stderr)
		}
	}
	r := RunUser(t, 10*time.Second, "unroot", "ports", "--state-dir="+state, "add", "8080:bogus:80")
	if r.Code != 1 || !strings.Contains(r.Stderr, "invalid childIP") {
		t.Errorf("bad spec: exit %d, stderr %q", r.Code, r.Stderr)
	}
	// Every forward still works.
	ptMustCurl(t, ptAddr("127.0.0.1", ps[0]), "", "127.0.0.1:")
	ptMustCurl(t, ptAddr("::1", ps[1]), "", "[::1]:")
}

func TestPortsSlirp4netns(t *testing.T) {
	t.Parallel()
	srv := ptServer(t)
	ps := ptPorts(t, 2)
	state, _, cmd, wait := lcStart(t, "rootlesskit", "--net=slirp4netns", "--port-driver=slirp4netns",
		fmt.Sprintf("-p=127.0.0.1:%d:8000/tcp", ps[0]), "--", srv, "-http", "0.0.0.0:8000")
	ptWaitCurl(t, ptAddr("127.0.0.1", ps[0]))
	// slirp4netns rebuilds the connection from its gateway address.
	ptMustCurl(t, ptAddr("127.0.0.1", ps[0]), "", "10.0.2.2:")
	sock := filepath.Join(state, "api.sock")
	r := RunUser(t, 10*time.Second, "rootlessctl", "--socket", sock, "add-ports", fmt.Sprintf("127.0.0.1:%d:8000/tcp6", ps[1]))
	if r.Code != 1 || !strings.Contains(r.Stderr, "needs an IPv6 address") {
		t.Errorf("tcp6 with a v4 parent: exit %d %q", r.Code, r.Stderr)
	}
	r = RunUser(t, 10*time.Second, "rootlessctl", "--socket", sock, "add-ports", fmt.Sprintf("[::1]:%d:8000/tcp6", ps[1]))
	if r.Code != 1 || !strings.Contains(r.Stderr, `unsupported protocol "tcp6"`) {
		t.Errorf("tcp6 on slirp4netns: exit %d %q", r.Code, r.Stderr)
	}
	r = RunUser(t, 10*time.Second, "rootlessctl", "--socket", sock, "add-ports", fmt.Sprintf("127.0.0.1:%d:8000/tcp", ps[1]))
	if r.Code != 0 {
		t.Fatalf("add-ports: %q", r.Stderr)
	}
	ptMustCurl(t, ptAddr("127.0.0.1", ps[1]), "", "10.0.2.2:")
	r = RunUser(t, 10*time.Second, "rootlessctl", "--socket", sock, "info", "--json")
	if !strings.Contains(r.Stdout, `"disallowLoopbackChildIP": true`) {
		t.Errorf("info: %s", r.Stdout)
	}
	syscall.Kill(cmd.Process.Pid, syscall.SIGTERM)
	wait()
	if _, err := ptCurl(t, ptAddr("127.0.0.1", ps[0]), ""); err == nil {
		t.Error("port answers after the launcher exited")
	}
}

// The launcher runs with a 64-descriptor limit (prlimit; the test has no
// CAP_SYS_RESOURCE to lower it from outside): a flood of connections
// exhausts it, and once they go away a new connection still works.
func TestPortsDescriptorFlood(t *testing.T) {
	t.Parallel()
	srv := ptServer(t)
	ps := ptPorts(t, 1)
	state := filepath.Join(TempDir(t), "state")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := UserCmd(t, ctx, "prlimit", "--nofile=64:64", filepath.Join(Bin, "unroot"), "run", "--state-dir="+state, "--net=slirp4netns",
		fmt.Sprintf("--publish=127.0.0.1:%d:8002/tcp", ps[0]), "--", srv, "-tcp", "[::]:8002")
	var se strings.Builder
	cmd.Stderr = &se
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}()
	WaitFile(t, filepath.Join(state, "child_pid"), 20*time.Second)
	addr := ptAddr("127.0.0.1", ps[0])
	for i := 0; i < 100; i++ {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			_, err := c.Read(make([]byte, 1))
			c.Close()
			if err == nil {
				break
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	var flood []net.Conn
	for range 400 {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			break
		}
		flood = append(flood, c)
	}
	time.Sleep(500 * time.Millisecond)
	for _, c := range flood {
		c.Close()
	}
	t.Logf("%d connections opened against a 64-descriptor limit", len(flood))
	if len(flood) < 100 {
		t.Errorf("only %d connections: the flood did not pass the limit", len(flood))
	}
	var peer string
	for i := 0; i < 3 && peer == ""; i++ {
		peer = ptTalk(t, addr)
	}
	if !strings.HasPrefix(peer, "127.0.0.1:") {
		t.Errorf("after the flood: peer %q", peer)
	}
	select {
	case err := <-done:
		t.Fatalf("the launcher exited during the flood: %v: %s", err, se.String())
	default:
	}
	// Each repeated warning is printed once, then counted every few
	// seconds (internal/lograte), not once per retry.
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	<-done
	done <- nil // for the deferred receive
	counts := map[string]int{}
	for _, l := range strings.Split(se.String(), "\n") {
		if msg, ok := strings.CutPrefix(l, "unroot: warning: "); ok {
			msg, _, _ = strings.Cut(msg, " err=")
			counts[msg]++
		}
	}
	for msg, n := range counts {
		if n > 4 { // one a 5 s interval, with room for a slow machine
			t.Errorf("%d lines of %q during the flood, want the first and a count", n, msg)
		}
	}
}

// rootlesskit-docker-proxy, as dockerd runs it inside the namespaces: it
// publishes the host port through the API, runs docker-proxy (here a
// stand-in that records its arguments and reports ok on fd 3) against the
// loopback address, and unpublishes on SIGINT.
func TestPortsDockerProxy(t *testing.T) {
	t.Parallel()
	dir := TempDir(t)
	fake := filepath.Join(dir, "docker-proxy")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\necho \"$@\" >\"$(dirname \"$0\")/args\"\nprintf '0\\n' >&3\nexec sleep 60\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	p := ptPorts(t, 1)[0]
	script := fmt.Sprintf(`PATH=%[1]s:$PATH
rootlesskit-docker-proxy -container-ip 172.17.0.2 -container-port 80 -host-ip 0.0.0.0 -host-port %[2]d -proto tcp 3>%[1]s/status &
pid=$!
i=0; until [ -s %[1]s/status ] || [ $i -gt 200 ]; do sleep 0.05; i=$((i+1)); done
echo "status=$(head -c1 %[1]s/status)"
rootlessctl list-ports --json
kill -INT $pid; wait $pid; echo "proxy-exit=$?"
echo "after=$(rootlessctl list-ports --json)"
`, dir, p)
	r := RunUser(t, 60*time.Second, "unroot", "run", "--net=slirp4netns", "--", "sh", "-c", script)
	want := []string{
		"status=0",
		fmt.Sprintf(`{"id":1,"spec":{"proto":"tcp4","parentIP":"0.0.0.0","parentPort":%d,"childPort":%d,"childIP":"127.0.0.1"}}`, p, p),
		"proxy-exit=0",
		"after=\n",
	}
	for _, w := range want {
		if !strings.Contains(r.Stdout+"\n", w) {
			t.Errorf("output lacks %q:\n%s\nstderr: %s", w, r.Stdout, r.Stderr)
		}
	}
	args, _ := os.ReadFile(filepath.Join(dir, "args"))
	if got := strings.TrimSpace(string(args)); got != fmt.Sprintf("-container-ip 172.17.0.2 -container-port 80 -host-ip 127.0.0.1 -host-port %d -proto tcp", p) {
		t.Errorf("docker-proxy got %q", got)
	}
}

// Debian's docker.io, rootless through its unchanged dockerd-rootless.sh
// with unroot first in PATH as rootlesskit (and rootlesskit-docker-proxy):
// a container's published port answers on the host.
func TestPortsDockerRootless(t *testing.T) {
	t.Parallel()
	p := ptPorts(t, 1)[0]
	r := dockerRootless(t, "hello from a rootless container", "", p, fmt.Sprintf(`ss -Hltnp "sport = :%d"`, p))
	if r.Code != 0 || !strings.Contains(r.Stdout, "hello from a rootless container") {
		t.Fatalf("docker run -p %d:80: exit %d\nstdout: %s\nstderr: %s", p, r.Code, r.Stdout, r.Stderr)
	}
	// The host side is the launcher's listener, published through the API
	// by rootlesskit-docker-proxy.
	if !strings.Contains(r.Stdout, `(("rootlesskit",`) {
		t.Errorf("port %d is not held by the launcher: %s", p, r.Stdout)
	}
	// dockerd is gone, and so is the port.
	if _, err := ptCurl(t, ptAddr("127.0.0.1", p), ""); err == nil {
		t.Errorf("port %d answers after dockerd stopped", p)
	}
}

// The first client whose address can be kept starts preparing the child
// for transparent sockets (iptables, run by the namespace init, when the
// child IP is not loopback). A command
// that ends just then ends while that runs: the helper must not outlive
// the launcher, neither as a live orphan nor as a zombie nobody reaps.
func TestPortsNoHelperOutlivesLauncher(t *testing.T) {
	t.Parallel()
	port := ptPorts(t, 1)[0]
	client := ptClientAddr(t)
	dir := TempDir(t)
	for i := range 20 {
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		state := filepath.Join(dir, fmt.Sprintf("state%d", i))
		cmd := UserCmd(t, ctx, "rootlesskit", "--state-dir="+state, "--net=slirp4netns", "--disable-host-loopback",
			"--port-driver=builtin", fmt.Sprintf("--publish=0.0.0.0:%d:10.0.2.100:80/tcp", port), "head", "-c1")
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		WaitFile(t, filepath.Join(state, "child_pid"), 10*time.Second)
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(client)}, Timeout: 5 * time.Second}
		c, err := d.DialContext(ctx, "tcp", ptAddr(client, port))
		if err != nil {
			t.Fatalf("run %d: connect from %s: %v", i, client, err)
		}
		// End the command a little after the connection, at a different
		// point of the preparation each run.
		time.Sleep(time.Duration(i) * time.Millisecond)
		stdin.Write([]byte{'x'})
		err = cmd.Wait()
		c.Close()
		cancel()
		if err != nil {
			t.Fatalf("run %d: %v; stderr: %s", i, err, stderr.String())
		}
		// An init that still runs owns its helpers; a helper whose parent
		// is not the test user's has been orphaned.
		for _, p := range UserProcesses(t) {
			pid, _ := strconv.Atoi(p)
			if !strings.Contains(comm(pid), "tables") {
				continue
			}
			if pp := ppidOf(pid); pp > 0 && uidOf(pp) != testUser.Uid {
				t.Errorf("run %d: %s (pid %d) outlived its launcher: its parent is now pid %d", i, comm(pid), pid, pp)
			}
		}
	}
}

func ppidOf(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 2 {
		return 0
	}
	pp, _ := strconv.Atoi(f[1])
	return pp
}

func uidOf(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 1 && f[0] == "Uid:" {
			return f[1]
		}
	}
	return ""
}

// A command that ends at once with ports published says nothing and exits
// with its own status: the port driver's refill finds the namespace gone,
// which is no failure, a UDP port may close before its goroutine runs, and
// the init may exit before the launcher has read that the command started.
// A busy parent port is one line that names the fix.
func TestPortsQuietExit(t *testing.T) {
	t.Parallel()
	ps := ptPorts(t, 1)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	ps = append(ps, busy.Addr().(*net.TCPAddr).Port)
	for i := range 10 {
		r := RunUser(t, 20*time.Second, "unroot", "run", "--net=slirp4netns", fmt.Sprintf("--publish=127.0.0.1:%d:80,127.0.0.1:%[1]d:80/udp", ps[0]), "true")
		if r.Code != 0 || r.Stderr != "" {
			t.Errorf("run %d: exit %d, stderr %q; want 0 and nothing", i, r.Code, r.Stderr)
		}
	}
	r := RunUser(t, 20*time.Second, "unroot", "run", "--net=slirp4netns", fmt.Sprintf("--publish=127.0.0.1:%d:80", ps[1]), "true")
	want := fmt.Sprintf("listen tcp 127.0.0.1:%d: bind: address already in use: another process (or another unroot) listens there; stop it or pick another parent port", ps[1])
	if lines := strings.Split(strings.TrimSpace(r.Stderr), "\n"); r.Code != 1 || len(lines) != 1 || !strings.Contains(r.Stderr, want) {
		t.Errorf("busy parent port: exit %d, stderr %q; want 1 and one line containing %q", r.Code, r.Stderr, want)
	}
}
