package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/unroot/unroot/internal/seccomp"
	"github.com/unroot/unroot/internal/testutil"
)

// The --bypass tests run the launcher inside a network namespace of the
// test's own, whose only address besides loopback is 198.18.0.1: that
// namespace is "the host" for the launcher, so its ports collide with
// nobody, a client there keeps a real address, and a server there is an
// address outside the launcher's namespace (egress) that is not loopback.

var bpStatic = &goBinary{name: "portserver-static", pkg: "./testdata/portserver", env: []string{"CGO_ENABLED=0"}}

// bpStaticServer builds testdata/portserver statically (no libc: a Go
// program makes its socket calls itself).
func bpStaticServer(t *testing.T) string { return bpStatic.path(t) }

// bpNetNS makes the test's "host": a netns with lo up and 198.18.0.1/32.
func bpNetNS(t *testing.T, name string) string {
	t.Helper()
	ns := fmt.Sprintf("unroot-e2e-%s-%d", name, os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	for _, args := range [][]string{{"link", "set", "lo", "up"}, {"addr", "add", "198.18.0.1/32", "dev", "lo"}} {
		if out, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	return ns
}

// bpIn runs a command as root in ns.
func bpIn(ns string, timeout time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns, name}, args...)...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// bpLauncher starts the launcher as the test user in ns.
func bpLauncher(t *testing.T, ns, mark string, args ...string) (*exec.Cmd, *strings.Builder) {
	t.Helper()
	uid, gid := testIDs(t)
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, "setpriv", "--reuid", strconv.Itoa(uid), "--regid", strconv.Itoa(gid), "--clear-groups"}, args...)...)
	cmd.Env = []string{"PATH=" + Bin + ":/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + testUser.HomeDir, "TMPDIR=/tmp", mark}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	cmd.Stdout = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, &stderr
}

// bpStop ends a launcher that bpLauncher started with SIGTERM and waits
// for it; its output goes to the log of a failed test.
func bpStop(t *testing.T, cmd *exec.Cmd, out *strings.Builder) {
	syscall.Kill(cmd.Process.Pid, syscall.SIGTERM)
	cmd.Wait()
	if t.Failed() {
		t.Logf("launcher output:\n%s", out)
	}
}

// bpHoldServer listens on 198.18.0.1:7000 in ns, accepting and holding
// every connection, until the test ends; it returns once it listens.
func bpHoldServer(t *testing.T, ns string) {
	t.Helper()
	srv := exec.Command("ip", "netns", "exec", ns, "/usr/bin/python3", "-c",
		`import socket
s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("198.18.0.1",7000)); s.listen(8)
cs=[]
while True:
    c,_=s.accept(); cs.append(c)`)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
	for range 200 {
		if out, _ := bpIn(ns, 5*time.Second, "ss", "-Hltn", "sport = :7000"); strings.Contains(out, "198.18.0.1:7000") {
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatal("the server on 198.18.0.1:7000 did not listen within 5s")
}

const bpUDPEcho = `import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
while True:
    d, a = s.recvfrom(2048)
    s.sendto(("peer=%s:%d " % a).encode() + d, a)
`

// bpHold connects to sys.argv[1]:sys.argv[2], creates sys.argv[3] and holds
// the connection open.
const bpHold = `import socket, sys, time
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
open(sys.argv[3], "w").close()
time.sleep(60)
`

// bpUDPOut sends one datagram from an unbound UDP socket to
// 198.18.0.1:7001 with sendto or (sys.argv[1] == "sendmsg") sendmsg, writes
// its pid to sys.argv[2] and stays.
const bpUDPOut = `import os, socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
if sys.argv[1] == "sendmsg":
    s.sendmsg([b"x"], [], 0, ("198.18.0.1", 7001))
else:
    s.sendto(b"x", ("198.18.0.1", 7001))
with open(sys.argv[2] + ".tmp", "w") as f:
    f.write(str(os.getpid()))
os.rename(sys.argv[2] + ".tmp", sys.argv[2])
time.sleep(60)
`

// bpUDPIn asks the UDP echo server at 127.0.0.1:sys.argv[1] from unbound,
// unconnected sockets, as a resolver does: sendto twice from one socket,
// then sendmsg (of two buffers) from another. Each line is the echo and where it came from.
// A datagram is sent again after 0.5 s without its echo (the server may
// still be starting). Last, a socket connected to it sends by sendto and
// sendmsg naming the address again (within the 10 s the supervisor
// remembers the swap), with 4 tries only: the server answers by then.
const bpUDPIn = `import socket, sys
dst = ("127.0.0.1", int(sys.argv[1]))
def ask(s, send, msg, tries=20):
    for i in range(tries):
        send(msg)
        try:
            while True:
                d, a = s.recvfrom(2048)
                if d.endswith(b" " + msg):
                    return "%s from %s:%d" % (d.decode(), a[0], a[1])
        except socket.timeout:
            pass
    return "no echo of " + msg.decode()
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(0.5)
print(ask(s, lambda m: s.sendto(m, dst), b"first"))
print(ask(s, lambda m: s.sendto(m, dst), b"again"))
m = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); m.settimeout(0.5)
print(ask(m, lambda x: m.sendmsg([x[:1], x[1:]], [], 0, dst), b"msg"))
c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); c.settimeout(0.5)
c.connect(dst)
print(ask(c, lambda m: c.sendto(m, dst), b"conn-sendto", 4))
print(ask(c, lambda m: c.sendmsg([m], [], 0, dst), b"conn-sendmsg", 4))
`

// TestBypassServers: with --bypass, servers inside listen on the host
// themselves (ss names them, not the launcher), clients reach them with
// their real address, programs inside still reach them at 127.0.0.1,
// unpublished ports stay inside, and a connect to an outside address
// leaves from a host socket of the program's own.
func TestBypassServers(t *testing.T) {
	t.Parallel()
	for _, p := range []string{"/usr/sbin/nginx", "/usr/bin/iperf3", "/usr/bin/python3"} {
		if !fileExists(p) {
			testutil.Unavailable(t, "%s is missing (scripts/apt-packages.txt lists it)", p)
		}
	}
	static := bpStaticServer(t)
	ns := bpNetNS(t, "bp")
	dir := TempDir(t)
	// The egress target: a server in "the host" on its non-loopback address.
	bpHoldServer(t, ns)

	script := bpServersScript(t, dir, static)
	state := filepath.Join(dir, "state")
	mark := fmt.Sprintf("UNROOT_LEAK_MARK=bp%d", time.Now().UnixNano())
	cmd, out := bpLauncher(t, ns, mark, filepath.Join(Bin, "rootlesskit"), "--state-dir="+state, "--net=slirp4netns", "--disable-host-loopback",
		"--port-driver=builtin", "--bypass",
		"-p", "0.0.0.0:8080:80/tcp", "-p", "0.0.0.0:8081:8081/tcp", "-p", "[::]:5201:5201/tcp", "-p", "0.0.0.0:5201:5201/udp",
		"-p", "0.0.0.0:5202:5202/tcp", "-p", "0.0.0.0:5353:5353/udp", "-p", "0.0.0.0:15354:5354/udp",
		"sh", "-c", script)
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			syscall.Kill(cmd.Process.Pid, syscall.SIGTERM)
			done := make(chan struct{})
			go func() { cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Errorf("the launcher did not end within 10s of SIGTERM")
				syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
				<-done
			}
		}
	}
	defer stop()
	defer func() {
		if t.Failed() {
			t.Logf("launcher output:\n%s", out)
			for _, f := range []string{"inside.err", "nginx.out"} {
				b, _ := os.ReadFile(filepath.Join(dir, f))
				t.Logf("%s: %s", f, b)
			}
		}
	}()
	WaitFile(t, filepath.Join(dir, "ready"), 30*time.Second)
	if r := RunUser(t, 10*time.Second, "unroot", "info", "--state-dir="+state, "--json"); !strings.Contains(r.Stdout, `"bypass": {`) || !strings.Contains(r.Stdout, `"enabled": true`) {
		t.Errorf("unroot info does not report bypass on: %s%s", r.Stdout, r.Stderr)
	}
	if r := RunUser(t, 10*time.Second, "unroot", "info", "--state-dir="+state); !strings.Contains(r.Stdout, "Bypass") || !strings.Contains(r.Stdout, "on (") {
		t.Errorf("unroot info does not report bypass on: %s%s", r.Stdout, r.Stderr)
	}
	read := func(name string) string {
		b, _ := os.ReadFile(filepath.Join(dir, name))
		return strings.TrimSpace(string(b))
	}
	// Inside: the bypassed ports at 127.0.0.1, and the unpublished one.
	if got := read("inside-nginx"); got != "nginx peer=127.0.0.1" {
		t.Errorf("nginx from inside at 127.0.0.1:80: %q, want \"nginx peer=127.0.0.1\" (%s; launcher: %s)", got, read("inside.err"), out)
	}
	if got := read("inside-go"); !strings.HasPrefix(got, "peer=127.0.0.1:") {
		t.Errorf("the static Go server from inside at 127.0.0.1:8081: %q (%s)", got, read("inside.err"))
	}
	if got := read("inside-unpublished"); !strings.HasPrefix(got, "peer=127.0.0.1:") {
		t.Errorf("an unpublished port from inside: %q (%s)", got, read("inside.err"))
	}
	ss := bpWaitOwners(t, ns)
	bpCheckInsideUDP(t, dir, read)
	if strings.Contains(ss, ":9090 ") {
		t.Errorf("the unpublished port 9090 is on the host:\n%s", ss)
	}
	bpCheckHostClients(t, ns)
	bpCheckEgress(t, ns, dir, state, read)
	stop()
	time.Sleep(200 * time.Millisecond)
	bpNoLeft(t, mark)
}

// bpServersScript writes nginx's configuration and the Python helpers into
// dir and returns the command's script: every server of TestBypassServers,
// then the inside clients, then "ready".
func bpServersScript(t *testing.T, dir, static string) string {
	ngx := filepath.Join(dir, "nginx")
	os.MkdirAll(ngx, 0o755)
	os.WriteFile(filepath.Join(ngx, "nginx.conf"), []byte(fmt.Sprintf(`user root root;
daemon off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  server { listen 80; location / { return 200 "nginx peer=$remote_addr\n"; } }
}
`, ngx)), 0o644)
	uid, gid := testIDs(t)
	os.Chown(ngx, uid, gid)
	os.WriteFile(filepath.Join(dir, "echo.py"), []byte(bpUDPEcho), 0o644)
	os.WriteFile(filepath.Join(dir, "hold.py"), []byte(bpHold), 0o644)
	os.WriteFile(filepath.Join(dir, "udpout.py"), []byte(bpUDPOut), 0o644)
	os.WriteFile(filepath.Join(dir, "udpin.py"), []byte(bpUDPIn), 0o644)
	script := fmt.Sprintf(`D=%[1]s
nginx -c $D/nginx/nginx.conf -p $D/nginx/ >$D/nginx.out 2>&1 &
iperf3 -s -p 5201 >/dev/null 2>&1 &
iperf3 -s -4 -p 5202 >/dev/null 2>&1 &
%[2]s -http 0.0.0.0:8081 >/dev/null 2>&1 &
/usr/bin/python3 $D/echo.py 5353 &
/usr/bin/python3 $D/echo.py 5354 &
%[2]s -http 0.0.0.0:9090 >/dev/null 2>&1 &
get() { i=0; until curl -fsS -m 2 "$1" >"$2" 2>>$D/inside.err; do i=$((i+1)); [ $i -gt 100 ] && break; sleep 0.1; done; }
get http://127.0.0.1:80/ $D/inside-nginx
get http://127.0.0.1:8081/ $D/inside-go
get http://127.0.0.1:9090/ $D/inside-unpublished
/usr/bin/python3 $D/hold.py 198.18.0.1 7000 $D/egress-ready 2>>$D/inside.err &
/usr/bin/python3 $D/udpout.py sendto $D/udp-ready 2>>$D/inside.err &
(while [ ! -e $D/udp-bound ]; do sleep 0.05; done; /usr/bin/python3 $D/udpin.py 5354 >$D/inside-udp.tmp 2>>$D/inside.err; mv $D/inside-udp.tmp $D/inside-udp) &
/usr/bin/python3 $D/udpout.py sendmsg $D/udpmsg-ready 2>>$D/inside.err &
touch $D/ready
wait
`, dir, static)
	return script
}

// bpWaitOwners waits until the host's listeners of the published ports are
// the programs' own sockets and returns the host's ss listing.
func bpWaitOwners(t *testing.T, ns string) string {
	// The host's listeners are the programs' own sockets, once each has
	// started (on a loaded machine that takes seconds).
	owners := map[int]string{8080: "nginx", 8081: "portserver-stat", 5201: "iperf3", 5202: "iperf3", 5353: "python3", 15354: "python3"}
	var ss string
	var missing []string
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		ss, _ = bpIn(ns, 10*time.Second, "ss", "-Hltnup")
		missing = nil
		for port, prog := range owners {
			found := false
			for _, line := range strings.Split(ss, "\n") {
				if strings.Contains(line, ":"+strconv.Itoa(port)+" ") && strings.Contains(line, `(("`+prog+`"`) {
					found = true
				}
			}
			if !found {
				missing = append(missing, fmt.Sprintf("port %d is not held by %s", port, prog))
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, m := range missing {
		t.Errorf("%s on the host within 30s:\n%s", m, ss)
	}
	return ss
}

// bpCheckInsideUDP checks unconnected datagrams from inside to a bypassed
// UDP port.
func bpCheckInsideUDP(t *testing.T, dir string, read func(string) string) {
	// Inside, unconnected UDP datagrams to the bypassed echo server at
	// 127.0.0.1:5354 (published as 15354) reach it, from the first one on,
	// by sendto and sendmsg; the second from a socket that is a host socket
	// by then, where 127.0.0.1:5354 would be the host's. The echoes come
	// from the host's address of the port.
	os.WriteFile(filepath.Join(dir, "udp-bound"), nil, 0o644)
	WaitFile(t, filepath.Join(dir, "inside-udp"), 40*time.Second)
	msgs := []string{"first", "again", "msg", "conn-sendto", "conn-sendmsg"}
	if got := strings.Split(read("inside-udp"), "\n"); len(got) != len(msgs) {
		t.Errorf("UDP echo from inside at 127.0.0.1:5354: %q (%s)", got, read("inside.err"))
	} else {
		for i, msg := range msgs {
			if !strings.HasPrefix(got[i], "peer=127.0.0.1:") || !strings.HasSuffix(got[i], " "+msg+" from 127.0.0.1:15354") {
				t.Errorf("UDP echo of %q from inside at 127.0.0.1:5354: %q, want \"peer=127.0.0.1:PORT %s from 127.0.0.1:15354\"", msg, got[i], msg)
			}
		}
	}
}

// bpCheckHostClients checks that clients of the host reach each bypassed
// server with their real address, TCP and UDP, and iperf3 through them.
func bpCheckHostClients(t *testing.T, ns string) {
	// Clients of the host, with their real address.
	curl := func(port int) string {
		got, err := bpIn(ns, 10*time.Second, "curl", "-fsS", "-m", "5", "--interface", "198.18.0.1", fmt.Sprintf("http://198.18.0.1:%d/", port))
		if err != nil {
			t.Errorf("curl port %d: %v: %s", port, err, got)
		}
		return got
	}
	if got := curl(8080); got != "nginx peer=198.18.0.1" {
		t.Errorf("nginx saw the client as %q, want 198.18.0.1", got)
	}
	if got := curl(8081); !strings.HasPrefix(got, "peer=198.18.0.1:") {
		t.Errorf("the static Go server saw the client as %q, want 198.18.0.1", got)
	}
	got, err := bpIn(ns, 10*time.Second, "/usr/bin/python3", "-c", `import socket
s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3); s.bind(("198.18.0.1",0))
s.sendto(b"hi", ("198.18.0.1",5353)); print(s.recvfrom(2048)[0].decode())`)
	if err != nil || !strings.HasPrefix(got, "peer=198.18.0.1:") || !strings.HasSuffix(got, " hi") {
		t.Errorf("UDP echo: %v: %q, want peer=198.18.0.1:PORT hi", err, got)
	}
	// iperf3 through the bypassed ports. The UDP row runs at 10 Mbit/s:
	// at 100 its datagrams filled the server's socket buffer within 20 ms,
	// so any pause of the server on a loaded machine lost half of them;
	// what it checks is that datagrams reach the bypassed socket.
	for _, args := range [][]string{
		{"-p", "5201"}, {"-p", "5202"}, {"-p", "5201", "-6", "-c", "::1"}, {"-p", "5201", "-u", "-b", "10M"},
	} {
		full := append([]string{"-c", "198.18.0.1", "-t", "1"}, args...)
		if args[len(args)-2] == "-c" {
			full = append([]string{"-t", "1"}, args...)
		}
		// At least a tenth of the datagrams: they reach the bypassed socket.
		iperf3Check(t, 0.1, func(args []string) (string, error) {
			return bpIn(ns, 20*time.Second, "iperf3", args...)
		}, full...)
	}
}

// bpCheckEgress checks that egress sockets are the programs' own host
// sockets and that the launcher holds no descriptor per connection.
func bpCheckEgress(t *testing.T, ns, dir, state string, read func(string) string) {
	// Egress: the connection to 198.18.0.1:7000 is the inside program's
	// own host socket, not the network driver's.
	WaitFile(t, filepath.Join(dir, "egress-ready"), 10*time.Second)
	est, _ := bpIn(ns, 10*time.Second, "ss", "-Htnp", "state", "established", "( dport = :7000 )")
	if !strings.Contains(est, `(("python3"`) {
		t.Errorf("the connection to 198.18.0.1:7000 is not the program's own host socket:\n%s", est)
	}
	// An unconnected UDP socket's first datagram out, by sendto and by
	// sendmsg with msg_name (Go's WriteMsgUDP, many resolvers): the socket
	// is a host socket of the program's own.
	for _, call := range []string{"udp", "udpmsg"} {
		WaitFile(t, filepath.Join(dir, call+"-ready"), 10*time.Second)
		pid := read(call + "-ready")
		if udp, _ := bpIn(ns, 10*time.Second, "ss", "-Hunap"); pid == "" || !strings.Contains(udp, `(("python3",pid=`+pid+`,`) {
			t.Errorf("the UDP socket of pid %s that sent to 198.18.0.1:7001 (%s) is not on the host:\n%s", pid, call, udp)
		}
	}
	// The launcher holds no descriptor per connection handled.
	lpid := launcherPID(t, state)
	before := fdCount(lpid)
	for range 20 {
		bpIn(ns, 5*time.Second, "curl", "-fsS", "-m", "2", "http://198.18.0.1:8080/")
	}
	bpIn(ns, 5*time.Second, "curl", "-fsS", "-m", "2", "http://198.18.0.1:8080/")
	if after := fdCount(lpid); after > before+2 {
		t.Errorf("the launcher's descriptors grew from %d to %d over 20 connections", before, after)
	}
}

func launcherPID(t *testing.T, state string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(state, "child_pid"))
	if err != nil {
		t.Fatal(err)
	}
	child := atoiOr0(strings.TrimSpace(string(b)))
	st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", child))
	f := strings.Fields(string(st[strings.LastIndexByte(string(st), ')')+1:]))
	if len(f) < 2 {
		t.Fatalf("stat of the init %d: %q", child, st)
	}
	return atoiOr0(f[1])
}

func fdCount(pid int) int {
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(ents)
}

// bpNoLeft fails for every process still alive with mark in its environment.
func bpNoLeft(t *testing.T, mark string) {
	t.Helper()
	environs, _ := filepath.Glob("/proc/[0-9]*/environ")
	for _, e := range environs {
		b, err := os.ReadFile(e)
		if err != nil || !strings.Contains(string(b), mark) {
			continue
		}
		if lcAlive(atoiOr0(filepath.Base(filepath.Dir(e)))) {
			cmdline, _ := os.ReadFile(filepath.Join(filepath.Dir(e), "cmdline"))
			t.Errorf("left running: %s %q", filepath.Dir(e), strings.ReplaceAll(string(cmdline), "\x00", " "))
		}
	}
}

// startUnderListener starts cmd under a seccomp filter with a listener that
// traps nothing, as an outer supervisor (a container runtime, another
// --bypass) would leave it: a second listener cannot be installed below it.
func startUnderListener(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	arch, err := seccomp.NativeArch()
	if err != nil {
		t.Skip(err)
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the filtered thread ends with us
		prog := seccomp.Program(arch, []seccomp.Rule{{Nr: 49, LenArg: 2, Lens: []uint32{0xffffffff}, NonZeroArg: -1}})
		fd, err := seccomp.Install(prog)
		if err != nil {
			errc <- err
			return
		}
		err = cmd.Start()
		// Held until the test ends: a closed listener no longer counts.
		l := seccomp.NewListener(fd)
		t.Cleanup(func() { l.Close() })
		errc <- err
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// TestBypassRefused: where the kernel refuses the filter, --bypass fails at
// once with the reason and the fix, --bypass=auto warns and relays, and
// info says which.
func TestBypassRefused(t *testing.T) {
	t.Parallel()
	dir := TempDir(t)
	for _, tc := range []struct {
		mode string
		code int
		want []string
	}{
		{"true", 1, []string{"install seccomp filter", "run the inner one without --bypass"}},
		{"auto", 0, []string{"--bypass=auto", "ports are relayed", `"mode": "auto"`, `"enabled": false`}},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		state := filepath.Join(dir, "state-"+tc.mode)
		pub := "127.0.0.1:" + strconv.Itoa(ptPorts(t, 1)[0]) + ":80/tcp"
		cmd := UserCmd(t, ctx, "unroot", "run", "--state-dir="+state, "--net=slirp4netns", "--bypass="+tc.mode, "-p", pub, "--",
			"sh", "-c", `i=0; until unroot info --json; do i=$((i+1)); [ $i -gt 50 ] && exit 3; sleep 0.1; done`)
		var so, se strings.Builder
		cmd.Stdout, cmd.Stderr = &so, &se
		startUnderListener(t, cmd)
		err := cmd.Wait()
		cancel()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("--bypass=%s: %v", tc.mode, err)
		}
		all := so.String() + se.String()
		if code != tc.code {
			t.Errorf("--bypass=%s under an outer listener: exit %d, want %d\n%s", tc.mode, code, tc.code, all)
		}
		for _, w := range tc.want {
			if !strings.Contains(all, w) {
				t.Errorf("--bypass=%s: output lacks %q:\n%s", tc.mode, w, all)
			}
		}
		if strings.Contains(all, "goroutine ") {
			t.Errorf("--bypass=%s printed a Go stack trace:\n%s", tc.mode, all)
		}
	}
}

// TestBypassDockerRootless: rootless Docker under --bypass runs a container
// with -p that answers. dockerd's own sockets and docker-proxy's listener
// go through the bypass; the containers' namespaces are nested and keep
// theirs.
func TestBypassDockerRootless(t *testing.T) {
	t.Parallel()
	ports := ptPorts(t, 2)
	p, q := ports[0], ports[1]
	r := dockerRootless(t, "hello from a bypassed container", fmt.Sprintf("--bypass -p 127.0.0.1:%d:80/tcp", q), p, fmt.Sprintf(`docker run --rm bb:latest sh -c 'echo container-ran' || { cat "$LOG"; exit 1; }
ss -Hltnp "sport = :%[1]d"
echo "launcher-published:"; ss -Hltnp "sport = :%[2]d"`, p, q))
	if r.Code != 0 || !strings.Contains(r.Stdout, "hello from a bypassed container") || !strings.Contains(r.Stdout, "container-ran") {
		t.Fatalf("docker run -p %d:80 under --bypass: exit %d\nstdout: %s\nstderr: %s", p, r.Code, r.Stdout, r.Stderr)
	}
	// The host side is docker-proxy's own socket now, not the launcher's.
	direct, published, _ := strings.Cut(r.Stdout, "launcher-published:")
	if strings.Contains(direct, `(("rootlesskit",`) || !strings.Contains(direct, `(("docker-proxy",`) {
		t.Errorf("port %d is not held by docker-proxy on the host: %s", p, r.Stdout)
	}
	// The container's httpd binds port 80 in a namespace of its own, nested
	// in the launcher's: it is never bypassed, even with 80 published by
	// the launcher, whose relay keeps that port.
	if !strings.Contains(published, `(("rootlesskit",`) {
		t.Errorf("port %d (the launcher's -p to 80) is not the relay's: the nested container's bind was bypassed: %s", q, r.Stdout)
	}
}

// TestBypassRelayComesBack: the relay steps aside while the program's host
// socket holds the published port and listens again once it is closed; a
// port published through the API while the command runs applies to later
// binds.
func TestBypassRelayComesBack(t *testing.T) {
	t.Parallel()
	static := bpStaticServer(t)
	ns := bpNetNS(t, "bpback")
	dir := TempDir(t)
	script := fmt.Sprintf(`D=%[1]s
%[2]s -http 0.0.0.0:80 >/dev/null 2>&1 & p=$!
touch $D/ready
while [ ! -e $D/stop1 ]; do sleep 0.05; done
kill $p; wait $p
touch $D/stopped1
while [ ! -e $D/api ]; do sleep 0.05; done
%[2]s -http 0.0.0.0:81 >/dev/null 2>&1 &
touch $D/started2
wait
`, dir, static)
	state := filepath.Join(dir, "state")
	mark := fmt.Sprintf("UNROOT_LEAK_MARK=bpback%d", time.Now().UnixNano())
	cmd, out := bpLauncher(t, ns, mark, filepath.Join(Bin, "unroot"), "run", "--state-dir="+state, "--net=slirp4netns", "--bypass",
		"-p", "0.0.0.0:8080:80/tcp", "sh", "-c", script)
	defer bpStop(t, cmd, out)
	WaitFile(t, filepath.Join(dir, "ready"), 30*time.Second)
	owner := func(port int, want string, within time.Duration) {
		t.Helper()
		deadline := time.Now().Add(within)
		var ss string
		for time.Now().Before(deadline) {
			ss, _ = bpIn(ns, 5*time.Second, "ss", "-Hltnp", fmt.Sprintf("sport = :%d", port))
			if strings.Contains(ss, `(("`+want+`"`) {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		// Tell a server that never bound (slow start) from one whose
		// listen failed after the relay came back (it exited).
		alive := "no server of this test is running"
		procs, _ := filepath.Glob("/proc/[0-9]*")
		for _, d := range procs {
			cl, _ := os.ReadFile(d + "/cmdline")
			env, _ := os.ReadFile(d + "/environ")
			if strings.HasPrefix(string(cl), static+"\x00") && strings.Contains(string(env), mark) {
				alive = "its server runs: " + strings.ReplaceAll(string(cl), "\x00", " ")
			}
		}
		t.Errorf("port %d is not held by %s within %v (%s): %q", port, want, within, alive, ss)
	}
	// ready comes before the server has bound: under a loaded CI machine
	// (every e2e test runs in parallel on 2 cores) its start alone can take
	// seconds, so wait as long as for ready itself.
	owner(8080, "portserver-stat", 30*time.Second)
	os.WriteFile(filepath.Join(dir, "stop1"), nil, 0o644)
	WaitFile(t, filepath.Join(dir, "stopped1"), 10*time.Second)
	// The relay listens again (after two checks 2 s apart).
	owner(8080, "unroot", 20*time.Second)
	ctl := exec.Command(filepath.Join(Bin, "rootlessctl"), "--socket", filepath.Join(state, "api.sock"), "add-ports", "0.0.0.0:8081:81/tcp")
	if o, err := ctl.CombinedOutput(); err != nil {
		t.Fatalf("rootlessctl add-ports: %v: %s", err, o)
	}
	os.WriteFile(filepath.Join(dir, "api"), nil, 0o644)
	WaitFile(t, filepath.Join(dir, "started2"), 10*time.Second)
	owner(8081, "portserver-stat", 30*time.Second)
	if got, err := bpIn(ns, 10*time.Second, "curl", "-fsS", "-m", "5", "--interface", "198.18.0.1", "http://198.18.0.1:8081/"); err != nil || !strings.HasPrefix(got, "peer=198.18.0.1:") {
		t.Errorf("the port published through the API: %v: %q", err, got)
	}
}

// TestBypassIgnore: a destination in --bypass-ignore goes through the
// network driver as without --bypass.
func TestBypassIgnore(t *testing.T) {
	t.Parallel()
	ns := bpNetNS(t, "bpign")
	dir := TempDir(t)
	bpHoldServer(t, ns)
	os.WriteFile(filepath.Join(dir, "hold.py"), []byte(bpHold), 0o644)
	mark := fmt.Sprintf("UNROOT_LEAK_MARK=bpign%d", time.Now().UnixNano())
	cmd, out := bpLauncher(t, ns, mark, filepath.Join(Bin, "unroot"), "run", "--state-dir="+filepath.Join(dir, "state"), "--net=slirp4netns",
		"--bypass", "--bypass-ignore=198.18.0.0/24", "/usr/bin/python3", filepath.Join(dir, "hold.py"), "198.18.0.1", "7000", filepath.Join(dir, "ready"))
	defer bpStop(t, cmd, out)
	WaitFile(t, filepath.Join(dir, "ready"), 30*time.Second)
	est, _ := bpIn(ns, 10*time.Second, "ss", "-Htnp", "state", "established", "( dport = :7000 )")
	if !strings.Contains(est, `(("slirp4netns"`) {
		t.Errorf("the connection to an ignored destination does not come from slirp4netns:\n%s", est)
	}
}

// TestBypassLibraryKnob: K3S_ROOTLESS_BYPASS=true in the rootless library
// puts the daemon's own listener on the host's published port.
func TestBypassLibraryKnob(t *testing.T) {
	ns := libNetns(t, "1")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := libCmd(t, ctx, ns, []string{"K3S_ROOTLESS_BYPASS=true"}, "-listen", "8080", "-publish", "18080", "-report")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	ready, lines := libUntilReady(t, ctx, cmd, &stderr)
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	r := parseReport(t, ready)
	if r.Info == nil || r.Info.Bypass == nil || !r.Info.Bypass.Enabled {
		t.Errorf("API info %+v (%s), want bypass enabled", r.Info, r.InfoErr)
	}
	if body, err := curlIn(t, ns, "http://127.0.0.1:18080/"); err != nil || !strings.HasPrefix(body, "hello from httpd-rootless") {
		t.Errorf("curl 127.0.0.1:18080: %v %q", err, body)
	}
	if ss, _ := bpIn(ns, 10*time.Second, "ss", "-Hltnp", "sport = :18080"); !strings.Contains(ss, `(("httpd-rootless"`) {
		t.Errorf("port 18080 is not the daemon's own socket on the host: %q", ss)
	}
	curlIn(t, ns, "http://127.0.0.1:18080/exit?code=0")
	for range lines {
	}
}

// TestBypassExecFormatError: under --bypass, a command the kernel cannot
// exec (a script without a shebang: ENOEXEC) fails the launcher with the
// exec error, as without --bypass. The init reports it after the filter is
// on its forking thread and its listener is closed: sent from that thread
// the report failed (ENOSYS) and the launcher said the child went away.
func TestBypassExecFormatError(t *testing.T) {
	t.Parallel()
	dir := TempDir(t)
	script := filepath.Join(dir, "no-shebang")
	if err := os.WriteFile(script, []byte("echo should-not-run\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	r := RunUser(t, 30*time.Second, "unroot", "run", "--state-dir="+filepath.Join(dir, "state"), "--net=slirp4netns", "--bypass", "--", script)
	if r.Code != 1 {
		t.Errorf("exit %d, want 1\nstdout: %s\nstderr: %s", r.Code, r.Stdout, r.Stderr)
	}
	// The launcher's own report (not the init's "child:" line on stderr,
	// followed by the launcher's EOF on the control channel).
	want := "unroot: start command " + script + ": exec format error"
	if !slices.Contains(strings.Split(r.Stderr, "\n"), want) || strings.Contains(r.Stderr, "EOF") {
		t.Errorf("stderr lacks the line %q, or the launcher lost the init's report:\n%s", want, r.Stderr)
	}
	if strings.Contains(r.Stdout+r.Stderr, "should-not-run") || strings.Contains(r.Stderr, "goroutine ") {
		t.Errorf("unexpected output:\nstdout: %s\nstderr: %s", r.Stdout, r.Stderr)
	}
}
