package relay

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// rawDial starts a non-blocking connect to addr and returns the raw socket,
// as the port driver hands sockets to the engine.
func rawDial(t testing.TB, addr *net.TCPAddr) int {
	t.Helper()
	fd, err := dialRaw(addr)
	if err != nil {
		t.Fatal(err)
	}
	return fd
}

func dialRaw(addr *net.TCPAddr) (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	sa := &unix.SockaddrInet4{Port: addr.Port}
	copy(sa.Addr[:], addr.IP.To4())
	if err := unix.Connect(fd, sa); err != nil && err != unix.EINPROGRESS {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// newEngine starts a one-loop engine that the test's end closes.
func newEngine(t testing.TB) *Engine {
	t.Helper()
	e, err := NewEngine(1, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}

// listen opens a loopback listener that the test's end closes.
func listen(t testing.TB) *net.TCPListener {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// rawPair returns a Go connection and the raw socket at its other end.
func rawPair(t testing.TB) (*net.TCPConn, int) {
	t.Helper()
	ln := listen(t)
	fd := rawDial(t, ln.Addr().(*net.TCPAddr))
	c, err := ln.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	return c, fd
}

// engineRelayed returns client and server ends of client <-> engine <-> server.
func engineRelayed(t testing.TB) (client, server *net.TCPConn, g *Group) {
	t.Helper()
	e := newEngine(t)
	client, a := rawPair(t)
	server, b := rawPair(t)
	t.Cleanup(func() { client.Close(); server.Close() })
	g = e.NewGroup()
	if err := g.Add(Pair{Client: a, Child: b}); err != nil {
		t.Fatal(err)
	}
	return client, server, g
}

func deadline(t testing.TB, cs ...net.Conn) {
	for _, c := range cs {
		c.SetDeadline(time.Now().Add(10 * time.Second))
	}
}

func TestEngineHalfClose(t *testing.T) {
	client, server, _ := engineRelayed(t)
	deadline(t, client, server)
	if _, err := client.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if err := client.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(server) // ends only if the FIN was passed on
	if err != nil || string(got) != "hello" {
		t.Fatalf("server read %q, %v; want hello, EOF", got, err)
	}
	// The reverse direction still flows after the client's FIN.
	if _, err := server.Write([]byte("world")); err != nil {
		t.Fatal(err)
	}
	server.Close()
	got, err = io.ReadAll(client)
	if err != nil || string(got) != "world" {
		t.Fatalf("client read %q, %v; want world, EOF", got, err)
	}
}

func TestEngineRequestResponse(t *testing.T) {
	client, server, _ := engineRelayed(t)
	deadline(t, client, server)
	buf := make([]byte, 64)
	for i := range 200 {
		msg := []byte{byte(i), 'q'}
		if _, err := client.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(server, buf[:2]); err != nil || !bytes.Equal(buf[:2], msg) {
			t.Fatalf("round %d: server read %q, %v", i, buf[:2], err)
		}
		msg[1] = 'a'
		if _, err := server.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(client, buf[:2]); err != nil || !bytes.Equal(buf[:2], msg) {
			t.Fatalf("round %d: client read %q, %v", i, buf[:2], err)
		}
	}
}

// TestEngineBulk moves 64 MiB each way at once, so both directions fill
// their destinations and wait for them.
func TestEngineBulk(t *testing.T) {
	client, server, _ := engineRelayed(t)
	deadline(t, client, server)
	const size = 64 << 20
	send := func(c *net.TCPConn, seed byte) [32]byte {
		h := sha256.New()
		b := make([]byte, 256<<10)
		for i := range b {
			b[i] = byte(i*7) + seed
		}
		for sent := 0; sent < size; sent += len(b) {
			b[0]++
			h.Write(b)
			if _, err := c.Write(b); err != nil {
				t.Error(err)
				break
			}
		}
		c.CloseWrite()
		return [32]byte(h.Sum(nil))
	}
	recv := func(c *net.TCPConn) ([32]byte, int64) {
		h := sha256.New()
		n, err := io.Copy(h, c)
		if err != nil {
			t.Error(err)
		}
		return [32]byte(h.Sum(nil)), n
	}
	var wg sync.WaitGroup
	var up, down, gotUp, gotDown [32]byte
	var nUp, nDown int64
	wg.Go(func() { up = send(client, 1) })
	wg.Go(func() { down = send(server, 2) })
	wg.Go(func() { gotUp, nUp = recv(server) })
	wg.Go(func() { gotDown, nDown = recv(client) })
	wg.Wait()
	if nUp != size || gotUp != up {
		t.Errorf("client → server: %d bytes, hash match %v; want %d", nUp, gotUp == up, size)
	}
	if nDown != size || gotDown != down {
		t.Errorf("server → client: %d bytes, hash match %v; want %d", nDown, gotDown == down, size)
	}
}

// TestEngineConnecting hands over a child socket whose connect is still
// under way, with the client's bytes already waiting.
func TestEngineConnecting(t *testing.T) {
	e := newEngine(t)
	ln := listen(t)
	client, a := rawPair(t)
	defer client.Close()
	deadline(t, client)
	client.Write([]byte("early"))
	g := e.NewGroup()
	if err := g.Add(Pair{Client: a, Child: rawDial(t, ln.Addr().(*net.TCPAddr))}); err != nil {
		t.Fatal(err)
	}
	server, err := ln.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	deadline(t, server)
	buf := make([]byte, 5)
	if _, err := io.ReadFull(server, buf); err != nil || string(buf) != "early" {
		t.Fatalf("server read %q, %v", buf, err)
	}
}

// TestEngineRefused: a refused connect resets the client, and its owner
// hears why first (ConnectFailed).
func TestEngineRefused(t *testing.T) {
	e := newEngine(t)
	ln := listen(t)
	addr := ln.Addr().(*net.TCPAddr)
	ln.Close() // nothing listens there now
	client, a := rawPair(t)
	defer client.Close()
	deadline(t, client)
	var redialed atomic.Bool
	var failed atomic.Value
	g := e.NewGroup()
	g.Add(Pair{Client: a, Child: rawDial(t, addr), Redial: func() (int, time.Duration, error) {
		redialed.Store(true)
		return -1, 0, errors.New("unexpected")
	}, ConnectFailed: func(err error) { failed.Store(err) }})
	_, err := client.Read(make([]byte, 1))
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("client read: %v, want a reset", err)
	}
	if redialed.Load() {
		t.Error("a refused connect was dialled again")
	}
	if err, _ := failed.Load().(error); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("ConnectFailed got %v before the reset, want connection refused", err)
	}
}

// TestEngineRefusedAfterClientSpoke: a connect refused while the client's
// first bytes wait to be relayed resets the client and reports
// ConnectFailed too, whichever the loop notices first: the refusal, or a
// write into the failed socket.
func TestEngineRefusedAfterClientSpoke(t *testing.T) {
	e := newEngine(t)
	ln := listen(t)
	addr := ln.Addr().(*net.TCPAddr)
	ln.Close() // nothing listens there now
	g := e.NewGroup()
	var failed atomic.Int32
	const n = 30
	clients := make([]*net.TCPConn, n)
	for i := range clients {
		client, a := rawPair(t)
		defer client.Close()
		deadline(t, client)
		client.Write([]byte("early"))
		child := rawDial(t, addr)
		waitTCPClosed(t, child) // refused before the engine sees it
		g.Add(Pair{Client: a, Child: child, ConnectFailed: func(error) { failed.Add(1) }})
		clients[i] = client
	}
	for i, c := range clients {
		if _, err := c.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("client %d read: %v, want a reset", i, err)
		}
	}
	if got := failed.Load(); got != n {
		t.Errorf("ConnectFailed called %d times for %d refused connects", got, n)
	}
}

// waitTCPClosed waits until fd's connect has failed (TCP_CLOSE), without
// taking its error (SO_ERROR would).
func waitTCPClosed(t *testing.T, fd int) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
		if err != nil {
			t.Fatal(err)
		}
		if info.State == 7 { // TCP_CLOSE
			return
		}
		if time.Now().After(end) {
			t.Fatalf("connect still in state %d after 5 s", info.State)
		}
	}
}

// TestEngineRedial: a connect that gets no answer within its timeout is
// replaced by Redial's socket, and the bytes the client sent meanwhile
// reach the server.
func TestEngineRedial(t *testing.T) {
	e := newEngine(t)
	// A listener whose accept queue is full drops SYNs: a connect to it
	// stays under way.
	full, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(full)
	if err := unix.Bind(full, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(full, 0); err != nil {
		t.Fatal(err)
	}
	sa, _ := unix.Getsockname(full)
	fullAddr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: sa.(*unix.SockaddrInet4).Port}
	filler := rawDial(t, fullAddr)
	defer unix.Close(filler)
	// The filler's handshake completes in softirq context, which a loaded
	// machine defers: wait until the listener has it queued (a listening
	// socket's TCP_INFO unacked is its accept queue's length).
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		info, err := unix.GetsockoptTCPInfo(full, unix.IPPROTO_TCP, unix.TCP_INFO)
		if err != nil {
			t.Fatal(err)
		}
		if info.Unacked >= 1 {
			break
		}
		if time.Now().After(end) {
			t.Fatal("the filler connection never reached the accept queue")
		}
	}

	ln := listen(t)
	client, a := rawPair(t)
	defer client.Close()
	deadline(t, client)
	g := e.NewGroup()
	g.Add(Pair{Client: a, Child: rawDial(t, fullAddr), ConnectTimeout: 100 * time.Millisecond,
		Redial: func() (int, time.Duration, error) {
			fd, err := dialRaw(ln.Addr().(*net.TCPAddr))
			return fd, time.Second, err
		}})
	client.Write([]byte("kept"))
	server, err := ln.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	deadline(t, server)
	buf := make([]byte, 4)
	if _, err := io.ReadFull(server, buf); err != nil || string(buf) != "kept" {
		t.Fatalf("server read %q, %v", buf, err)
	}
	server.Write([]byte("back"))
	if _, err := io.ReadFull(client, buf); err != nil || string(buf) != "back" {
		t.Fatalf("client read %q, %v", buf, err)
	}
}

// TestEngineGroupClose ends a group's connections and nothing else's.
func TestEngineGroupClose(t *testing.T) {
	e := newEngine(t)
	g1, g2 := e.NewGroup(), e.NewGroup()
	c1, a1 := rawPair(t)
	s1, b1 := rawPair(t)
	c2, a2 := rawPair(t)
	s2, b2 := rawPair(t)
	for _, c := range []*net.TCPConn{c1, s1, c2, s2} {
		defer c.Close()
		deadline(t, c)
	}
	g1.Add(Pair{Client: a1, Child: b1})
	g2.Add(Pair{Client: a2, Child: b2})
	g1.Close()
	if n, err := c1.Read(make([]byte, 1)); err == nil {
		t.Fatalf("group 1 client read %d bytes after Close, want EOF", n)
	}
	if err := g1.Add(Pair{Client: -1, Child: -1}); err == nil {
		t.Error("Add to a closed group succeeded")
	}
	c2.Write([]byte("x"))
	if _, err := io.ReadFull(s2, make([]byte, 1)); err != nil {
		t.Fatalf("group 2 broken by closing group 1: %v", err)
	}
}

// BenchmarkEngineRoundTrip is a small request and answer through the engine.
func BenchmarkEngineRoundTrip(b *testing.B) {
	client, server, _ := engineRelayed(b)
	buf := make([]byte, 64)
	b.ResetTimer()
	for range b.N {
		client.Write(buf[:32])
		io.ReadFull(server, buf[:32])
		server.Write(buf[:32])
		io.ReadFull(client, buf[:32])
	}
}

// TestEngineClientCC: the client socket changes congestion control once
// bytes for it queue up, and not for a small exchange.
func TestEngineClientCC(t *testing.T) {
	cur, err := os.ReadFile("/proc/sys/net/ipv4/tcp_congestion_control")
	if err != nil {
		t.Fatal(err)
	}
	avail, err := os.ReadFile("/proc/sys/net/ipv4/tcp_available_congestion_control")
	if err != nil {
		t.Fatal(err)
	}
	def := strings.TrimSpace(string(cur))
	cc := ""
	for _, c := range strings.Fields(string(avail)) {
		if c != def {
			cc = c
			break
		}
	}
	if cc == "" {
		t.Fatalf("only %q is available; the test needs a second algorithm (modprobe tcp_cubic)", def)
	}
	e := newEngine(t)
	g := e.NewGroup()
	ccOf := func(fd int) string {
		s, _ := unix.GetsockoptString(fd, unix.IPPROTO_TCP, unix.TCP_CONGESTION)
		return s
	}

	client, a := rawPair(t)
	server, b := rawPair(t)
	defer client.Close()
	defer server.Close()
	deadline(t, client, server)
	if err := g.Add(Pair{Client: a, Child: b, ClientCC: cc}); err != nil {
		t.Fatal(err)
	}
	server.Write([]byte("hi"))
	io.ReadFull(client, make([]byte, 2))
	if got := ccOf(a); got != def {
		t.Errorf("after a small exchange the client has %q, want %q still", got, def)
	}
	go func() {
		server.Write(make([]byte, 32<<20))
		server.CloseWrite()
	}()
	// The client reads nothing yet, so the relay's writes to it fill up.
	for end := time.Now().Add(10 * time.Second); ccOf(a) != cc && time.Now().Before(end); {
		time.Sleep(10 * time.Millisecond)
	}
	if got := ccOf(a); got != cc {
		t.Errorf("with bytes queued for the client it has %q, want %q", got, cc)
	}
	if n, err := io.Copy(io.Discard, client); n != 32<<20 || err != nil {
		t.Errorf("client read %d bytes, %v", n, err)
	}
}

// The loop's thread outlives the loop. The launcher forks the namespace
// init with Pdeathsig from whatever thread the runtime gives it, and a
// goroutine that ends locked to a thread ends the thread: a loop that did
// so killed the init when its port driver closed first. A child forked
// with Pdeathsig from a thread that goes back to the pool stands in for the
// init while engines come and go.
func TestLoopThreadOutlivesLoop(t *testing.T) {
	var (
		cmd *exec.Cmd
		err error
	)
	forked := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread() // the thread goes back to the pool
		cmd = exec.Command("sleep", "60")
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		err = cmd.Start()
		close(forked)
	}()
	<-forked
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	for range 100 {
		e, err := NewEngine(2, nil)
		if err != nil {
			t.Fatal(err)
		}
		e.Close()
	}
	// A killed child is gone at once; give its reaping a moment anyway.
	time.Sleep(50 * time.Millisecond)
	if err := cmd.Process.Signal(syscall.Signal(0)); err != nil {
		t.Fatalf("the Pdeathsig child died while engines came and went: %v", err)
	}
	var ws syscall.WaitStatus
	if pid, _ := syscall.Wait4(cmd.Process.Pid, &ws, syscall.WNOHANG, nil); pid != 0 {
		t.Fatalf("the Pdeathsig child exited (%v) while engines came and went", ws)
	}
}
