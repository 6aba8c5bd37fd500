package builtin

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/unroot/unroot/internal/sys"
	"github.com/unroot/unroot/internal/testutil"
	"github.com/unroot/unroot/port"
)

func newDriver(t *testing.T, src port.SocketSource, o Options) *Driver {
	t.Helper()
	d, err := NewFactory(o)(context.Background(), port.Env{Sockets: src})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d.(*Driver)
}

// freePort returns a port that was free on the host a moment ago.
func freePort(t *testing.T, network string) int {
	t.Helper()
	if strings.HasPrefix(network, "udp") {
		pc, err := net.ListenPacket(network, "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		return pc.LocalAddr().(*net.UDPAddr).Port
	}
	ln, err := net.Listen(network, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// serveWho accepts connections, writes the peer address as one line, then
// echoes until the peer half-closes, then writes "bye" and closes.
func serveWho(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			fmt.Fprintf(c, "%s\n", c.RemoteAddr())
			io.Copy(c, c)
			c.Write([]byte("bye"))
		}()
	}
}

// serveWhoUDP answers each datagram with "<peer> <payload>".
func serveWhoUDP(pc net.PacketConn) {
	buf := make([]byte, 2048)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		pc.WriteTo([]byte(from.String()+" "+string(buf[:n])), from)
	}
}

// talk dials addr (optionally from local), checks the greeting, the echo
// and the half-close handshake, and returns the peer address the server saw.
func talk(t *testing.T, addr string, local net.Addr) string {
	t.Helper()
	d := net.Dialer{LocalAddr: local, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	return talkConn(t, c)
}

func talkConn(t *testing.T, c net.Conn) string {
	t.Helper()
	defer c.Close()
	addr := c.RemoteAddr()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	who, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("read greeting via %s: %v", addr, err)
	}
	c.Write([]byte("ping"))
	c.(*net.TCPConn).CloseWrite()
	rest, err := io.ReadAll(r)
	if err != nil || string(rest) != "pingbye" {
		t.Fatalf("via %s: read %q, %v; want pingbye then EOF", addr, rest, err)
	}
	return strings.TrimSpace(who)
}

func udpTalk(t *testing.T, network, addr string, local *net.UDPAddr, msg string) string {
	t.Helper()
	raddr, err := net.ResolveUDPAddr(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.DialUDP(network, local, raddr)
	if err != nil {
		t.Fatal(err)
	}
	return udpTalkConn(t, c, msg)
}

func udpTalkConn(t *testing.T, c net.Conn, msg string) string {
	t.Helper()
	defer c.Close()
	buf := make([]byte, 2048)
	for try := 0; try < 20; try++ {
		c.Write([]byte(msg))
		c.SetReadDeadline(time.Now().Add(250 * time.Millisecond))
		n, err := c.Read(buf)
		if err == nil {
			return string(buf[:n])
		}
	}
	t.Fatalf("no UDP answer via %s", c.RemoteAddr())
	return ""
}

func TestTCPHostSource(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go serveWho(ln)
	d := newDriver(t, hostSource{}, DefaultOptions)
	pp := freePort(t, "tcp")
	st, err := d.Add(context.Background(), port.Spec{Proto: "tcp", ParentIP: netip.MustParseAddr("127.0.0.1"), ParentPort: pp, ChildPort: ln.Addr().(*net.TCPAddr).Port})
	if err != nil {
		t.Fatal(err)
	}
	if st.ID != 1 {
		t.Errorf("first ID = %d, want 1", st.ID)
	}
	for i := 0; i < 20; i++ {
		if who := talk(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(pp)), nil); !strings.HasPrefix(who, "127.0.0.1:") {
			t.Errorf("server saw %q, want a 127.0.0.1 peer", who)
		}
	}
	if err := d.Remove(context.Background(), st.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(pp)), time.Second); err == nil {
		t.Error("dial after Remove succeeded")
	}
	if err := d.Remove(context.Background(), st.ID); err == nil || err.Error() != "unknown id: 1" {
		t.Errorf("second Remove = %v, want unknown id: 1", err)
	}
}

// udpWhoPort publishes a host-source UDP port to a serveWhoUDP server and
// returns the parent port.
func udpWhoPort(t *testing.T) int {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go serveWhoUDP(pc)
	d := newDriver(t, hostSource{}, DefaultOptions)
	pp := freePort(t, "udp")
	if _, err := d.Add(context.Background(), port.Spec{Proto: "udp", ParentPort: pp, ChildPort: pc.LocalAddr().(*net.UDPAddr).Port}); err != nil {
		t.Fatal(err)
	}
	return pp
}

func TestUDPHostSource(t *testing.T) {
	pp := udpWhoPort(t)
	for _, addr := range []string{"127.0.0.1", "::1"} {
		got := udpTalk(t, "udp", net.JoinHostPort(addr, strconv.Itoa(pp)), nil, "hi")
		if !strings.HasPrefix(got, "127.0.0.1:") || !strings.HasSuffix(got, " hi") {
			t.Errorf("via %s: got %q, want a 127.0.0.1 peer and hi", addr, got)
		}
	}
}

// A UDP flow waiting for its server holds no datagram buffer: a port with
// many clients (a DNS server's, whose clients use a port per query) costs
// a goroutine and a socket per flow, not 64 KiB.
func TestUDPIdleFlowsHoldNoBuffer(t *testing.T) {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(udpWhoPort(t)))
	// A buffer of constant size that does not escape lives on the
	// goroutine's stack, so stacks count too.
	inUse := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapInuse + m.StackInuse
	}
	const flows = 300
	before := inUse()
	for i := range flows {
		// Each client port is a flow of its own, which stays open (idle)
		// after its answer.
		if got := udpTalk(t, "udp", addr, nil, "q"); !strings.HasSuffix(got, " q") {
			t.Fatalf("flow %d: got %q", i, got)
		}
	}
	grown := int64(inUse()) - int64(before)
	if limit := int64(flows * udpBufSize / 4); grown > limit {
		t.Errorf("heap and stacks grew %d KiB for %d idle flows, want under %d KiB: flows hold their buffers", grown>>10, flows, limit>>10)
	}
}

func TestAddErrors(t *testing.T) {
	d := newDriver(t, hostSource{}, DefaultOptions)
	pp := freePort(t, "tcp")
	ctx := context.Background()
	if _, err := d.Add(ctx, port.Spec{Proto: "tcp", ParentPort: pp, ChildPort: 80}); err != nil {
		t.Fatal(err)
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	tests := []struct {
		spec port.Spec
		want string
	}{
		{port.Spec{Proto: "tcp6", ParentIP: netip.MustParseAddr("::1"), ParentPort: pp, ChildPort: 80}, "conflict with ID 1"},
		{port.Spec{Proto: "sctp", ParentIP: netip.MustParseAddr("127.0.0.1"), ParentPort: pp, ChildPort: 80}, "not supported"},
		{port.Spec{Proto: "tcp", ParentIP: netip.MustParseAddr("127.0.0.1"), ParentPort: 0, ChildPort: 80}, "invalid parentPort"},
		{port.Spec{Proto: "tcp", ParentIP: netip.MustParseAddr("127.0.0.1"), ParentPort: 1, ChildPort: 70000}, "invalid childPort"},
		{port.Spec{Proto: "quic", ParentIP: netip.MustParseAddr("127.0.0.1"), ParentPort: 1, ChildPort: 1}, "unknown proto"},
		{port.Spec{Proto: "tcp", ParentIP: netip.MustParseAddr("fe80::1%eth0"), ParentPort: 1, ChildPort: 1}, "invalid parentIP"},
		{port.Spec{Proto: "tcp", ParentIP: netip.MustParseAddr("127.0.0.1"), ParentPort: busy.Addr().(*net.TCPAddr).Port, ChildPort: 1}, fmt.Sprintf("listen tcp %s: bind: address already in use: another process", busy.Addr())},
		{port.Spec{Proto: "tcp", ParentIP: netip.MustParseAddr("192.0.2.77"), ParentPort: 1234, ChildPort: 1}, "not an address of this host"},
	}
	for _, tt := range tests {
		_, err := d.Add(ctx, tt.spec)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Add(%+v) = %v, want containing %q", tt.spec, err, tt.want)
		}
		if err != nil && strings.Count(err.Error(), "listen ") > 1 {
			t.Errorf("Add(%+v) = %q: says listen twice", tt.spec, err)
		}
	}
	if got, _ := d.List(ctx); len(got) != 1 || got[0].ID != 1 {
		t.Errorf("List after failed adds = %+v, want only ID 1", got)
	}
	// IDs keep counting: a new port gets 2.
	st, err := d.Add(ctx, port.Spec{Proto: "udp", ParentPort: pp, ChildPort: 80})
	if err != nil || st.ID != 2 {
		t.Errorf("Add udp on the same port = %+v, %v; want ID 2", st, err)
	}
}

func TestListenErrorPrivileged(t *testing.T) {
	err := listenError(port.Spec{Proto: "tcp", ParentIP: netip.MustParseAddr("0.0.0.0"), ParentPort: 80, ChildPort: 80}, &net.OpError{Op: "listen", Net: "tcp", Err: os.NewSyscallError("bind", syscall.EACCES)})
	for _, want := range []string{"sudo sysctl net.ipv4.ip_unprivileged_port_start=80", "sudo setcap cap_net_bind_service=ep ", "permission denied"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("listenError = %q, want containing %q", err, want)
		}
	}
	if !errors.Is(err, syscall.EACCES) {
		t.Errorf("listenError does not wrap EACCES: %v", err)
	}
}

func TestNoSocketSource(t *testing.T) {
	_, err := New(context.Background(), port.Env{})
	if err == nil || !strings.Contains(err.Error(), "requires non-host network") {
		t.Fatalf("New without sockets = %v, want the non-host network error", err)
	}
}

// The driver in a helper process with a 64-descriptor limit: a flood of
// connections exhausts it, and once they go away a new connection works.
func TestDescriptorExhaustion(t *testing.T) {
	if os.Getenv("UNROOT_BUILTIN_HELPER") == "emfile" {
		return
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go serveWho(ln)
	pp := freePort(t, "tcp")
	cmd := exec.Command(os.Args[0], "-test.run=^TestMain$")
	cmd.Env = append(os.Environ(), "UNROOT_BUILTIN_HELPER=emfile", fmt.Sprintf("UNROOT_HELPER_PORTS=%d:%d", pp, ln.Addr().(*net.TCPAddr).Port))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
	}
	if err != nil || strings.TrimSpace(line) != "ready" {
		t.Fatalf("helper said %q, %v", line, err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(pp))
	var flood []net.Conn
	for i := 0; i < 300; i++ {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			break // backlog full: the flood did its job
		}
		flood = append(flood, c)
	}
	// Held a while: the retries repeat, their warnings must not.
	time.Sleep(2 * time.Second)
	for _, c := range flood {
		c.Close()
	}
	t.Logf("flooded with %d connections past a 64-descriptor limit", len(flood))
	if who := talk(t, addr, nil); !strings.HasPrefix(who, "127.0.0.1:") {
		t.Errorf("after the flood the server saw %q", who)
	}
	cmd.Process.Kill()
	cmd.Wait()
	if !strings.Contains(stderr.String(), "too many open files") {
		t.Errorf("the flood never exhausted the helper's descriptors; its log:\n%s", stderr.String())
	}
	// Each kind of warning: the first, then a count every few seconds
	// (internal/lograte), not one line per retry.
	counts := map[string]int{}
	for _, l := range strings.Split(stderr.String(), "\n") {
		if strings.Contains(l, "level=WARN") {
			msg, _, _ := strings.Cut(l[strings.Index(l, "msg="):], " err=")
			counts[msg]++
		}
	}
	for msg, n := range counts {
		if n > 4 { // one a 5 s interval, with room for a slow machine
			t.Errorf("%d warnings %s in about 2 s of exhaustion, want a few (rate-limited)", n, msg)
		}
	}
}

func TestMain(m *testing.M) {
	if os.Getenv("UNROOT_BUILTIN_HELPER") == "emfile" {
		emfileHelper()
		return
	}
	testutil.Main(m) // fails on leftover goroutines and descriptors
}

func emfileHelper() {
	var pp, cp int
	fmt.Sscanf(os.Getenv("UNROOT_HELPER_PORTS"), "%d:%d", &pp, &cp)
	d, err := New(context.Background(), port.Env{Sockets: hostSource{}, Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	proto := "tcp"
	if os.Getenv("UNROOT_HELPER_PROTO") == "udp" {
		proto = "udp"
	}
	if _, err := d.Add(context.Background(), port.Spec{Proto: proto, ParentIP: netip.MustParseAddr("127.0.0.1"), ParentPort: pp, ChildPort: cp}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: 64, Max: 64}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println("ready")
	select {}
}

// countingSource is hostSource that counts the sockets it hands out.
type countingSource struct {
	hostSource
	n atomic.Int32
}

func (c *countingSource) Socket(ctx context.Context, family, sotype int) (int, error) {
	c.n.Add(1)
	return c.hostSource.Socket(ctx, family, sotype)
}

// TestPoolRefillsWhenHalfEmpty: the pool is refilled once half of it is
// taken, not after every socket, so a busy port does not wake the refill
// for each connection.
func TestPoolRefillsWhenHalfEmpty(t *testing.T) {
	src := &countingSource{}
	d := newDriver(t, src, Options{PoolSize: 8})
	d.mu.Lock()
	p := d.poolLocked(netip.MustParseAddrPort("127.0.0.1:9"), "tcp")
	d.mu.Unlock()
	waitFull := func(want int32) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); len(p.ready) < cap(p.ready) || src.n.Load() != want; {
			if time.Now().After(deadline) {
				t.Fatalf("pool holds %d of %d after %d sockets, want full after %d", len(p.ready), cap(p.ready), src.n.Load(), want)
			}
			time.Sleep(time.Millisecond)
		}
	}
	takeN := func(n int) {
		for range n {
			fd, ok := p.take()
			if !ok {
				t.Fatal("the pool was empty")
			}
			sys.Close(fd)
		}
	}
	waitFull(8)
	takeN(3)
	time.Sleep(50 * time.Millisecond)
	if n := src.n.Load(); n != 8 {
		t.Fatalf("the pool fetched %d sockets with 5 of 8 left, want none", n-8)
	}
	takeN(1)
	waitFull(12)
	// After a burst that empties it, taken while the refill runs, the pool
	// comes back above half: a refill that ends full may meet the burst's
	// last request, and the next take at half asks again.
	takeN(8)
	for deadline := time.Now().Add(5 * time.Second); len(p.ready) <= cap(p.ready)/2; {
		if time.Now().After(deadline) {
			t.Fatalf("after a burst the pool holds %d of %d and is not refilled", len(p.ready), cap(p.ready))
		}
		time.Sleep(time.Millisecond)
	}
}

// TestUDPFlowCap: past UDPMaxFlows, a new client replaces the idlest flow:
// new clients are still answered, the count stays at the cap, and a client
// with traffic keeps its flow (the server sees the same child socket).
func TestUDPFlowCap(t *testing.T) {
	defer func(n int) { UDPMaxFlows = n }(UDPMaxFlows)
	UDPMaxFlows = 4
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	go serveWhoUDP(pc)
	d := newDriver(t, hostSource{}, DefaultOptions)
	pp := freePort(t, "udp")
	if _, err := d.Add(context.Background(), port.Spec{Proto: "udp", ParentPort: pp, ChildPort: pc.LocalAddr().(*net.UDPAddr).Port}); err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(pp))
	active := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: freePort(t, "udp")}
	first := udpTalk(t, "udp", addr, active, "a")
	for i := range 12 {
		if got := udpTalk(t, "udp", addr, nil, "new"); !strings.HasSuffix(got, " new") {
			t.Fatalf("new client %d: got %q", i, got)
		}
		if n := d.udpFlows.Load(); n > 4 {
			t.Fatalf("%d flows open past a cap of 4", n)
		}
		if got := udpTalk(t, "udp", addr, active, "a"); got != first {
			t.Fatalf("after new client %d the active client's datagrams came from %q, want %q: its flow was replaced", i, got, first)
		}
	}
	if n := d.udpFlows.Load(); n != 4 {
		t.Errorf("%d flows open, want the cap, 4", n)
	}
}
