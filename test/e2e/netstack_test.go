package e2e

// End-to-end tests of the embedded netstack driver through the real binary,
// run as the unprivileged test user on a PATH without slirp4netns or pasta,
// as on a bare machine: --net=auto picks it, the host's loopback is reached
// through the gateway only when allowed, DNS is forwarded to the host's
// resolver, iperf3 runs, nothing is left behind, and the idle launcher
// stays small.

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
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

// nskBareCmd is UserCmd with a PATH holding only unroot and the tools the
// tests run, so neither slirp4netns nor pasta can be found.
func nskBareCmd(t *testing.T, ctx context.Context, args ...string) *exec.Cmd {
	t.Helper()
	dir := TempDir(t)
	bare := filepath.Join(dir, "bin")
	if err := os.Mkdir(bare, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tool := range []string{"newuidmap", "newgidmap", "sh", "curl", "iperf3", "getent", "cat", "sleep", "busybox"} {
		p, err := exec.LookPath(tool)
		if err != nil {
			t.Fatalf("%s not found: scripts/apt-packages.txt installs it", tool)
		}
		if err := os.Symlink(p, filepath.Join(bare, tool)); err != nil {
			t.Fatal(err)
		}
	}
	cmd := UserCmd(t, ctx, "unroot", args...)
	for i, e := range cmd.Env {
		if strings.HasPrefix(e, "PATH=") {
			cmd.Env[i] = "PATH=" + Bin + ":" + bare
		}
	}
	return cmd
}

// nskRun runs `unroot run FLAGS -- sh -c SCRIPT` on the bare PATH.
func nskRun(t *testing.T, flags []string, script string) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	args := append(append([]string{"run"}, flags...), "--", "sh", "-c", script)
	return nskExec(t, nskBareCmd(t, ctx, args...))
}

// nskExec runs cmd to completion like Run, recording every process below it
// while it runs, and fails if any of them outlives it. (Other tests share
// the test user, so counting the user's processes would not do.)
func nskExec(t *testing.T, cmd *exec.Cmd) Result {
	t.Helper()
	var so, se strings.Builder
	cmd.Stdout, cmd.Stderr = &so, &se
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	seen := nskWatch(cmd.Process.Pid)
	err := cmd.Wait()
	pids := seen()
	r := Result{Stdout: so.String(), Stderr: se.String()}
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("%s: %v\nstderr: %s", strings.Join(cmd.Args, " "), err, r.Stderr)
		}
		r.Code = ee.ExitCode()
	}
	nskNoLeftovers(t, pids)
	return r
}

// nskWatch polls the process tree under pid until the returned function is
// called, which returns every descendant seen.
func nskWatch(pid int) func() []int {
	stop := make(chan struct{})
	done := make(chan []int)
	go func() {
		seen := map[int]bool{}
		for {
			for _, p := range nskDescendants(pid) {
				seen[p] = true
			}
			select {
			case <-stop:
				var out []int
				for p := range seen {
					out = append(out, p)
				}
				done <- out
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	return func() []int { close(stop); return <-done }
}

func nskDescendants(root int) []int {
	children := map[int][]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if pp := nskStat(pid, 1); pp != "" {
			ppid, _ := strconv.Atoi(pp)
			children[ppid] = append(children[ppid], pid)
		}
	}
	var out []int
	queue := []int{root}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out
}

// nskStat returns field i after the command name in /proc/PID/stat
// (0 is the state, 1 the parent pid), or "" if the process is gone.
func nskStat(pid, i int) string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	j := strings.LastIndexByte(string(data), ')')
	f := strings.Fields(string(data[j+1:]))
	if i >= len(f) {
		return ""
	}
	return f[i]
}

// nskNoLeftovers fails if any of pids is still running (zombies waiting
// for their new parent to reap them count as gone).
func nskNoLeftovers(t *testing.T, pids []int) {
	t.Helper()
	// They are killed as unroot ends; a loaded machine may take a while
	// to run their exits.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var left []string
		for _, p := range pids {
			if st := nskStat(p, 0); st != "" && st != "Z" {
				left = append(left, fmt.Sprintf("%d(%s)", p, nskComm(p)))
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("processes left running after unroot exited: %v", left)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func nskComm(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return strings.TrimSpace(string(b))
}

// nskHTTP serves "netstack-ok" on the host's 127.0.0.1 and returns the port.
func nskHTTP(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "netstack-ok") })}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(l) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return l.Addr().(*net.TCPAddr).Port
}

func TestNetstackAutoAndHostLoopback(t *testing.T) {
	port := nskHTTP(t)
	// The API's info names the driver --net=auto chose; curl then tries the
	// host's loopback through the gateway.
	script := fmt.Sprintf(`curl -sS --unix-socket "$ROOTLESSKIT_STATE_DIR/api.sock" http://unroot/v1/info; echo
curl -sS --max-time 5 http://10.0.2.1:%d/; echo " curl=$?"`, port)

	t.Run("allowed", func(t *testing.T) {
		r := nskRun(t, []string{"--net=auto", "--disable-host-loopback=false"}, script)
		if r.Code != 0 {
			t.Fatalf("unroot run: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
		}
		lines := strings.SplitN(r.Stdout, "\n", 2)
		var info struct {
			NetworkDriver struct {
				Driver  string   `json:"driver"`
				DNS     []string `json:"dns"`
				ChildIP string   `json:"childIP"`
			} `json:"networkDriver"`
		}
		if err := json.Unmarshal([]byte(lines[0]), &info); err != nil {
			t.Fatalf("api info %q: %v\nstderr: %s", lines[0], err, r.Stderr)
		}
		if nd := info.NetworkDriver; nd.Driver != "netstack" || nd.ChildIP != "10.0.2.100" || len(nd.DNS) != 1 || nd.DNS[0] != "10.0.2.1" {
			t.Fatalf("networkDriver = %+v; want netstack, child 10.0.2.100, dns [10.0.2.1] (--net=auto without slirp4netns and pasta)", nd)
		}
		if !strings.Contains(r.Stdout, "netstack-ok curl=0") {
			t.Fatalf("curl through the gateway to the host's loopback failed:\n%s\nstderr: %s", r.Stdout, r.Stderr)
		}
	})
	t.Run("disabled by default", func(t *testing.T) {
		r := nskRun(t, []string{"--net=auto"}, script)
		if r.Code != 0 {
			t.Fatalf("unroot run: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
		}
		// 7 is curl's "couldn't connect": refused at once, not timed out (28).
		if !strings.Contains(r.Stdout, " curl=7") || strings.Contains(r.Stdout, "netstack-ok") {
			t.Fatalf("the host's loopback was reachable (or timed out) with host loopback disabled:\n%s\nstderr: %s", r.Stdout, r.Stderr)
		}
	})
}

// nskDNSServer answers every A query with 192.0.2.123 on addr (UDP).
func nskDNSServer(t *testing.T, addr string) {
	t.Helper()
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Fatalf("listen for the test resolver on %s: %v", addr, err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if r := nskDNSAnswer(buf[:n]); r != nil {
				pc.WriteTo(r, from)
			}
		}
	}()
	t.Cleanup(func() { pc.Close(); wg.Wait() })
}

func nskDNSAnswer(q []byte) []byte {
	if len(q) < 12 {
		return nil
	}
	i := 12
	for i < len(q) && q[i] != 0 {
		i += 1 + int(q[i])
	}
	if i+5 > len(q) {
		return nil
	}
	qtype := binary.BigEndian.Uint16(q[i+1:])
	r := append([]byte{}, q[:2]...)
	an := byte(0)
	if qtype == 1 {
		an = 1
	}
	r = append(r, 0x81, 0x80, 0, 1, 0, an, 0, 0, 0, 0)
	r = append(r, q[12:i+5]...)
	if an == 1 {
		r = append(r, 0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 123)
	}
	return r
}

func TestNetstackDNS(t *testing.T) {
	// The driver forwards to the resolvers of the host's /etc/resolv.conf.
	// The test gives unroot a private mount namespace in which that file
	// names a resolver the test runs on loopback, then drops to the user.
	const resolver = "127.0.0.153"
	nskDNSServer(t, resolver+":53")
	dir := TempDir(t)
	rc := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(rc, []byte("nameserver "+resolver+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tools := map[string]string{}
	for _, tool := range []string{"unshare", "setpriv", "mount"} {
		p, err := exec.LookPath(tool)
		if err != nil {
			t.Fatalf("%s not found: util-linux (scripts/apt-packages.txt) provides it", tool)
		}
		tools[tool] = p
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	user := nskBareCmd(t, ctx, "run", "--net=auto", "--", "getent", "hosts", "svc.unroot.test")
	uid, gid := testIDs(t)
	script := `"$1" --bind "$2" /etc/resolv.conf || exit 1
setpriv=$3 u=$4 g=$5; shift 5
exec "$setpriv" --reuid="$u" --regid="$g" --clear-groups -- "$@"`
	args := []string{"-m", "--propagation", "private", "--", "/bin/sh", "-c", script, "sh",
		tools["mount"], rc, tools["setpriv"], strconv.Itoa(uid), strconv.Itoa(gid)}
	root := exec.CommandContext(ctx, tools["unshare"], append(args, user.Args...)...)
	root.Env, root.Dir = user.Env, user.Dir
	root.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	root.Cancel = func() error { return syscall.Kill(-root.Process.Pid, syscall.SIGKILL) }
	root.WaitDelay = 5 * time.Second
	r := nskExec(t, root)
	if r.Code != 0 || !strings.Contains(r.Stdout, "192.0.2.123") {
		t.Fatalf("getent hosts svc.unroot.test inside = exit %d %q, want 192.0.2.123 from the loopback resolver\nstderr: %s", r.Code, r.Stdout, r.Stderr)
	}
}

func TestNetstackIperf3(t *testing.T) {
	if _, err := exec.LookPath("iperf3"); err != nil {
		t.Fatal("iperf3 not found: scripts/apt-packages.txt installs it")
	}
	port := ptPorts(t, 1)[0]
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	srv := exec.CommandContext(ctx, "iperf3", "-s", "-B", "127.0.0.1", "-p", strconv.Itoa(port))
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { srv.Process.Kill(); srv.Wait() }()
	waitListening(t, 0, port, 20*time.Second)
	for _, mtu := range []string{"65520", "1500"} {
		var r Result
		iperf3Retry(func() (string, error) {
			r = nskRun(t, []string{"--net=netstack", "--mtu=" + mtu, "--disable-host-loopback=false"},
				fmt.Sprintf("iperf3 -c 10.0.2.1 -p %d -t 2 -J", port))
			return r.Stdout, nil
		})
		if r.Code != 0 {
			t.Fatalf("iperf3 at MTU %s: exit %d\n%s\n%s", mtu, r.Code, r.Stdout, r.Stderr)
		}
		var res struct {
			End struct {
				SumReceived struct {
					Bytes         int64   `json:"bytes"`
					BitsPerSecond float64 `json:"bits_per_second"`
				} `json:"sum_received"`
			} `json:"end"`
		}
		if err := json.Unmarshal([]byte(r.Stdout), &res); err != nil || res.End.SumReceived.Bytes == 0 {
			t.Fatalf("iperf3 at MTU %s moved nothing (%v):\n%s", mtu, err, r.Stdout)
		}
		t.Logf("namespace→host through netstack at MTU %s: %.2f Gbit/s", mtu, res.End.SumReceived.BitsPerSecond/1e9)
	}
}

// TestNetstackIdlePSS measures the launcher (unroot and the namespace init,
// not the command) idle with the netstack driver: at most 25 MB PSS.
func TestNetstackIdlePSS(t *testing.T) {
	state := filepath.Join(TempDir(t), "state")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := nskBareCmd(t, ctx, "run", "--state-dir="+state, "--net=netstack", "--", "sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Cancel(); cmd.Wait() }()
	WaitFile(t, filepath.Join(state, "child_pid"), 20*time.Second)
	time.Sleep(2 * time.Second)
	data, err := os.ReadFile(filepath.Join(state, "child_pid"))
	if err != nil {
		t.Fatal(err)
	}
	child, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	total := 0
	for _, pid := range []int{cmd.Process.Pid, child} {
		kb, err := nskPSS(pid)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("pid %d: Pss %d KiB", pid, kb)
		total += kb
	}
	t.Logf("idle launcher with netstack: %.1f MB PSS", float64(total)/1024)
	if total > 25*1024 {
		t.Fatalf("idle launcher PSS = %d KiB, want at most 25 MiB", total)
	}
}

func nskPSS(pid int) (int, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "Pss:" {
			return strconv.Atoi(f[1])
		}
	}
	return 0, fmt.Errorf("no Pss in /proc/%d/smaps_rollup", pid)
}

func TestNetstackBadFlags(t *testing.T) {
	for _, tt := range []struct {
		flag, want string
	}{
		{"--cidr=10.0.2.5/24", "cidr must be like 10.0.2.0/24"},
		{"--cidr=10.0.2.0/28", "too small"},
		{"--mtu=70000", "mtu must be <= 65521"},
	} {
		r := RunUser(t, 30*time.Second, "unroot", "run", "--net=netstack", tt.flag, "--", "true")
		lines := strings.Split(strings.TrimSpace(r.Stderr), "\n")
		if r.Code != 1 || len(lines) != 1 || !strings.Contains(r.Stderr, tt.want) {
			t.Errorf("unroot run --net=netstack %s: exit %d, stderr %q; want exit 1 and one line containing %q", tt.flag, r.Code, r.Stderr, tt.want)
		}
	}
}

// TestNetstackPublish checks the builtin port driver works with netstack: a
// server in the namespace is reachable from the host through -p.
func TestNetstackPublish(t *testing.T) {
	port := ptPorts(t, 1)[0]
	dir := TempDir(t)
	if err := os.WriteFile(filepath.Join(dir, "index.html"), []byte("served-inside"), 0o644); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "state")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := nskBareCmd(t, ctx, "run", "--state-dir="+state, "--net=netstack",
		fmt.Sprintf("-p=127.0.0.1:%d:8000/tcp", port), "--", "busybox", "httpd", "-f", "-p", "8000", "-h", dir)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	seen := nskWatch(cmd.Process.Pid)
	WaitFile(t, filepath.Join(state, "child_pid"), 20*time.Second)
	var body string
	deadline := time.Now().Add(20 * time.Second) // httpd starts after child_pid
	for time.Now().Before(deadline) {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
		if err == nil {
			b := make([]byte, 64)
			n, _ := resp.Body.Read(b)
			resp.Body.Close()
			body = string(b[:n])
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
	nskNoLeftovers(t, seen())
	if body != "served-inside" {
		t.Fatalf("GET through -p 127.0.0.1:%d = %q, want the namespace's page", port, body)
	}
}

// TestNetstackIPv6 reaches the host's ::1 through the IPv6 gateway at once
// (no wait for duplicate address detection).
func TestNetstackIPv6(t *testing.T) {
	l, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Fatalf("listen on ::1: %v (the host needs IPv6 on loopback)", err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "v6-ok") })}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(l) }()
	defer func() { srv.Close(); <-done }()
	port := l.Addr().(*net.TCPAddr).Port
	r := nskRun(t, []string{"--net=netstack", "--ipv6", "--disable-host-loopback=false"},
		fmt.Sprintf(`cat /etc/resolv.conf; curl -sS --max-time 5 "http://[fd00:756e:726f:6f74::1]:%d/"`, port))
	if r.Code != 0 || !strings.Contains(r.Stdout, "v6-ok") || !strings.Contains(r.Stdout, "nameserver fd00:756e:726f:6f74::1") {
		t.Fatalf("curl via the IPv6 gateway: exit %d\n%s\nstderr: %s", r.Code, r.Stdout, r.Stderr)
	}
}

// TestNetstackExitUnderTraffic ends the command while a stream through the
// driver is still running: unroot must close the network and exit at once
// and leave nothing. (The driver's own Close under traffic is covered by
// network/netstack's TestCloseDuringTransfer.)
func TestNetstackExitUnderTraffic(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(io.Discard, c) }()
		}
	}()
	port := l.Addr().(*net.TCPAddr).Port
	start := time.Now()
	// Without a PID namespace the stream outlives sh; unroot must still end
	// it with the namespace.
	r := nskRun(t, []string{"--net=netstack", "--pidns=false", "--disable-host-loopback=false"},
		fmt.Sprintf(`(curl -sS -m 30 -T /dev/zero http://10.0.2.1:%d/ >/dev/null 2>&1 &) ; sleep 1`, port))
	if took := time.Since(start); r.Code != 0 || took > 15*time.Second {
		t.Fatalf("unroot run: exit %d after %v (want 0, promptly)\nstderr: %s", r.Code, took, r.Stderr)
	}
}
