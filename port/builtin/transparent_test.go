package builtin

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/unroot/unroot/port"
)

// The test's client addresses: non-loopback addresses on the host
// namespace's lo.
const keptV4, keptV6 = "198.18.7.1", "fd00:5eed::7"

// The parent side runs in a namespace of its own too (host), so the test
// can give it non-loopback client addresses without touching the machine's
// network: listeners and clients are made on host's thread, sockets for the
// child come from child's.
func TestClientAddressKept(t *testing.T) {
	e := newKeptEnv(t)
	for i, transparent := range []bool{true, false} {
		t.Run(fmt.Sprintf("transparent=%v", transparent), func(t *testing.T) { e.checkKept(t, transparent, 20000+10*i) })
	}
	// Until the child is prepared, the first clients whose address can be
	// kept wait, and the port goes on serving everyone else.
	t.Run("accepting while the child is prepared", e.checkAcceptWhilePrepared)
	// By default UDP keeps no client address, so a server on a wildcard
	// address (which lets the kernel pick its reply's source) still works.
	t.Run("udp default, wildcard server", e.checkUDPWildcardServer)
}

// keptEnv is TestClientAddressKept's two namespaces, with servers in
// child that answer with the client address they see.
type keptEnv struct {
	child, host *nsSource
	ln4, ln6    net.Listener
	pc4, pc6    net.PacketConn
}

func newKeptEnv(t *testing.T) *keptEnv {
	e := &keptEnv{child: newNSSource(t), host: newNSSource(t)}
	e.host.ip(t, "addr", "add", keptV4+"/32", "dev", "lo")
	// nodad: an address without it is tentative until the kernel's DAD
	// work has run, which a loaded machine runs late, and until then a
	// bind to it fails (EADDRNOTAVAIL).
	e.host.ip(t, "-6", "addr", "add", keptV6+"/128", "dev", "lo", "nodad")
	e.ln4 = e.child.listen(t, "tcp", "127.0.0.1:0")
	e.ln6 = e.child.listen(t, "tcp", "[::1]:0")
	e.pc4 = e.child.listenPacket(t, "udp", "127.0.0.1:0")
	e.pc6 = e.child.listenPacket(t, "udp", "[::1]:0")
	go serveWho(e.ln4)
	go serveWho(e.ln6)
	go serveWhoUDP(e.pc4)
	go serveWhoUDP(e.pc6)
	return e
}

// cport is a's port.
func cport(a net.Addr) int {
	_, p, _ := net.SplitHostPort(a.String())
	n, _ := strconv.Atoi(p)
	return n
}

// dial connects from the host namespace, from local if set.
func (e *keptEnv) dial(t *testing.T, network, local, addr string) net.Conn {
	t.Helper()
	var (
		c   net.Conn
		err error
	)
	d := net.Dialer{Timeout: 5 * time.Second}
	if local != "" {
		if strings.HasPrefix(network, "udp") {
			d.LocalAddr = &net.UDPAddr{IP: net.ParseIP(local)}
		} else {
			d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
		}
	}
	e.host.do(func() { c, err = d.Dial(network, addr) })
	if err != nil {
		t.Fatalf("dial %s %s from %q: %v", network, addr, local, err)
	}
	return c
}

// add publishes s on d from the host namespace.
func (e *keptEnv) add(t *testing.T, d *Driver, s port.Spec) {
	t.Helper()
	var err error
	e.host.do(func() { _, err = d.Add(context.Background(), s) })
	if err != nil {
		t.Fatal(err)
	}
}

// checkKept publishes TCP and UDP ports from base on and checks which
// client address the servers see: the client's own with transparent, a
// loopback one without; loopback clients stay loopback either way.
func (e *keptEnv) checkKept(t *testing.T, transparent bool, base int) {
	d := newDriver(t, e.child, Options{SourceIPTransparent: transparent, SourceIPTransparentUDP: transparent})
	for _, s := range []port.Spec{
		{Proto: "tcp", ParentPort: base, ChildPort: cport(e.ln4.Addr())},
		{Proto: "udp", ParentPort: base + 1, ChildPort: cport(e.pc4.LocalAddr())},
		{Proto: "tcp6", ParentIP: netip.MustParseAddr("::"), ParentPort: base + 2, ChildIP: netip.MustParseAddr("::1"), ChildPort: cport(e.ln6.Addr())},
		{Proto: "udp6", ParentPort: base + 3, ChildPort: cport(e.pc6.LocalAddr())},
	} {
		e.add(t, d, s)
	}
	want4, want6 := keptV4+":", "["+keptV6+"]:"
	if !transparent {
		want4, want6 = "127.0.0.1:", "[::1]:"
	}
	hp := func(ip string, p int) string { return net.JoinHostPort(ip, strconv.Itoa(p)) }
	for range 3 {
		if who := talkConn(t, e.dial(t, "tcp", keptV4, hp("127.0.0.1", base))); !strings.HasPrefix(who, want4) {
			t.Errorf("tcp from %s: server saw %s, want %s...", keptV4, who, want4)
		}
		if who := talkConn(t, e.dial(t, "tcp", keptV6, hp("::1", base+2))); !strings.HasPrefix(who, want6) {
			t.Errorf("tcp6 from %s: server saw %s, want %s...", keptV6, who, want6)
		}
	}
	// Loopback clients stay loopback: the child's lo is another interface.
	if who := talkConn(t, e.dial(t, "tcp", "", hp("127.0.0.1", base))); !strings.HasPrefix(who, "127.0.0.1:") {
		t.Errorf("tcp from loopback: server saw %s", who)
	}
	// A v6 client of a dual-stack port whose child is IPv4 cannot be kept.
	if who := talkConn(t, e.dial(t, "tcp", keptV6, hp("::1", base))); !strings.HasPrefix(who, "127.0.0.1:") {
		t.Errorf("tcp from %s to a v4 child: server saw %s", keptV6, who)
	}
	got := udpTalkConn(t, e.dial(t, "udp4", keptV4, hp("127.0.0.1", base+1)), "hi")
	if !strings.HasPrefix(got, want4) || !strings.HasSuffix(got, " hi") {
		t.Errorf("udp from %s: server saw %q, want %s... hi", keptV4, got, want4)
	}
	got = udpTalkConn(t, e.dial(t, "udp6", keptV6, hp("::1", base+3)), "hi6")
	if !strings.HasPrefix(got, want6) || !strings.HasSuffix(got, " hi6") {
		t.Errorf("udp6 from %s: server saw %q, want %s... hi6", keptV6, got, want6)
	}
}

// checkAcceptWhilePrepared: a client whose address can be kept waits until
// the child is prepared for it; loopback clients are served meanwhile.
func (e *keptEnv) checkAcceptWhilePrepared(t *testing.T) {
	src := gatedSource{SocketSource: e.child, gate: make(chan struct{})}
	d := newDriver(t, src, DefaultOptions)
	e.add(t, d, port.Spec{Proto: "tcp", ParentPort: 20200, ChildPort: cport(e.ln4.Addr())})
	waiting := e.dial(t, "tcp", keptV4, "127.0.0.1:20200")
	defer waiting.Close()
	greeting := make(chan string, 1)
	go func() {
		waiting.SetReadDeadline(time.Now().Add(10 * time.Second))
		line, err := bufio.NewReader(waiting).ReadString('\n')
		if err != nil {
			line = "error: " + err.Error()
		}
		greeting <- line
	}()
	for range 3 {
		if who := talkConn(t, e.dial(t, "tcp", "", "127.0.0.1:20200")); !strings.HasPrefix(who, "127.0.0.1:") {
			t.Errorf("loopback client during the preparation: server saw %s", who)
		}
	}
	select {
	case got := <-greeting:
		t.Fatalf("the client from %s was served before the child was prepared: %q", keptV4, got)
	default:
	}
	close(src.gate)
	if got := <-greeting; !strings.HasPrefix(got, keptV4+":") {
		t.Errorf("client from %s after the preparation: server saw %q, want %s:...", keptV4, got, keptV4)
	}
}

// checkUDPWildcardServer: with the default options, a UDP server on a
// wildcard address answers a non-loopback client.
func (e *keptEnv) checkUDPWildcardServer(t *testing.T) {
	pcw := e.child.listenPacket(t, "udp", ":0")
	go serveWhoUDP(pcw)
	d := newDriver(t, e.child, DefaultOptions)
	e.add(t, d, port.Spec{Proto: "udp", ParentPort: 20100, ChildPort: cport(pcw.LocalAddr())})
	got := udpTalkConn(t, e.dial(t, "udp4", keptV4, "127.0.0.1:20100"), "hi")
	if !strings.HasPrefix(got, "127.0.0.1:") || !strings.HasSuffix(got, " hi") {
		t.Errorf("udp from %s to a wildcard server: got %q, want a 127.0.0.1 peer", keptV4, got)
	}
}

// gatedSource holds EnableTransparent until gate closes. The namespace's
// routing for transparent sockets is already in place from the subtests
// before, so it adds nothing itself.
type gatedSource struct {
	port.SocketSource
	gate chan struct{}
}

func (g gatedSource) EnableTransparent(ctx context.Context, connmark bool) error {
	select {
	case <-g.gate:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
