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

// The parent side runs in a namespace of its own too (host), so the test
// can give it non-loopback client addresses without touching the machine's
// network: listeners and clients are made on host's thread, sockets for the
// child come from child's.
func TestClientAddressKept(t *testing.T) {
	child := newNSSource(t)
	host := newNSSource(t)
	const v4, v6 = "198.18.7.1", "fd00:5eed::7"
	host.ip(t, "addr", "add", v4+"/32", "dev", "lo")
	// nodad: an address without it is tentative until the kernel's DAD
	// work has run, which a loaded machine runs late, and until then a
	// bind to it fails (EADDRNOTAVAIL).
	host.ip(t, "-6", "addr", "add", v6+"/128", "dev", "lo", "nodad")

	ln4 := child.listen(t, "tcp", "127.0.0.1:0")
	ln6 := child.listen(t, "tcp", "[::1]:0")
	pc4 := child.listenPacket(t, "udp", "127.0.0.1:0")
	pc6 := child.listenPacket(t, "udp", "[::1]:0")
	go serveWho(ln4)
	go serveWho(ln6)
	go serveWhoUDP(pc4)
	go serveWhoUDP(pc6)
	cport := func(a net.Addr) int {
		_, p, _ := net.SplitHostPort(a.String())
		n, _ := strconv.Atoi(p)
		return n
	}
	dial := func(network, local, addr string) net.Conn {
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
		host.do(func() { c, err = d.Dial(network, addr) })
		if err != nil {
			t.Fatalf("dial %s %s from %q: %v", network, addr, local, err)
		}
		return c
	}

	for i, transparent := range []bool{true, false} {
		t.Run(fmt.Sprintf("transparent=%v", transparent), func(t *testing.T) {
			d := newDriver(t, child, Options{SourceIPTransparent: transparent, SourceIPTransparentUDP: transparent})
			ctx := context.Background()
			base := 20000 + 10*i
			specs := []port.Spec{
				{Proto: "tcp", ParentPort: base, ChildPort: cport(ln4.Addr())},
				{Proto: "udp", ParentPort: base + 1, ChildPort: cport(pc4.LocalAddr())},
				{Proto: "tcp6", ParentIP: netip.MustParseAddr("::"), ParentPort: base + 2, ChildIP: netip.MustParseAddr("::1"), ChildPort: cport(ln6.Addr())},
				{Proto: "udp6", ParentPort: base + 3, ChildPort: cport(pc6.LocalAddr())},
			}
			for _, s := range specs {
				var err error
				host.do(func() { _, err = d.Add(ctx, s) })
				if err != nil {
					t.Fatal(err)
				}
			}
			want4, want6 := v4+":", "["+v6+"]:"
			if !transparent {
				want4, want6 = "127.0.0.1:", "[::1]:"
			}
			hp := func(ip string, p int) string { return net.JoinHostPort(ip, strconv.Itoa(p)) }
			for range 3 {
				if who := talkConn(t, dial("tcp", v4, hp("127.0.0.1", base))); !strings.HasPrefix(who, want4) {
					t.Errorf("tcp from %s: server saw %s, want %s...", v4, who, want4)
				}
				if who := talkConn(t, dial("tcp", v6, hp("::1", base+2))); !strings.HasPrefix(who, want6) {
					t.Errorf("tcp6 from %s: server saw %s, want %s...", v6, who, want6)
				}
			}
			// Loopback clients stay loopback: the child's lo is another interface.
			if who := talkConn(t, dial("tcp", "", hp("127.0.0.1", base))); !strings.HasPrefix(who, "127.0.0.1:") {
				t.Errorf("tcp from loopback: server saw %s", who)
			}
			// A v6 client of a dual-stack port whose child is IPv4 cannot be kept.
			if who := talkConn(t, dial("tcp", v6, hp("::1", base))); !strings.HasPrefix(who, "127.0.0.1:") {
				t.Errorf("tcp from %s to a v4 child: server saw %s", v6, who)
			}
			got := udpTalkConn(t, dial("udp4", v4, hp("127.0.0.1", base+1)), "hi")
			if !strings.HasPrefix(got, want4) || !strings.HasSuffix(got, " hi") {
				t.Errorf("udp from %s: server saw %q, want %s... hi", v4, got, want4)
			}
			got = udpTalkConn(t, dial("udp6", v6, hp("::1", base+3)), "hi6")
			if !strings.HasPrefix(got, want6) || !strings.HasSuffix(got, " hi6") {
				t.Errorf("udp6 from %s: server saw %q, want %s... hi6", v6, got, want6)
			}
		})
	}

	// Until the child is prepared, the first clients whose address can be
	// kept wait, and the port goes on serving everyone else.
	t.Run("accepting while the child is prepared", func(t *testing.T) {
		src := gatedSource{SocketSource: child, gate: make(chan struct{})}
		d := newDriver(t, src, DefaultOptions)
		var err error
		host.do(func() {
			_, err = d.Add(context.Background(), port.Spec{Proto: "tcp", ParentPort: 20200, ChildPort: cport(ln4.Addr())})
		})
		if err != nil {
			t.Fatal(err)
		}
		waiting := dial("tcp", v4, "127.0.0.1:20200")
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
			if who := talkConn(t, dial("tcp", "", "127.0.0.1:20200")); !strings.HasPrefix(who, "127.0.0.1:") {
				t.Errorf("loopback client during the preparation: server saw %s", who)
			}
		}
		select {
		case got := <-greeting:
			t.Fatalf("the client from %s was served before the child was prepared: %q", v4, got)
		default:
		}
		close(src.gate)
		if got := <-greeting; !strings.HasPrefix(got, v4+":") {
			t.Errorf("client from %s after the preparation: server saw %q, want %s:...", v4, got, v4)
		}
	})

	// By default UDP keeps no client address, so a server on a wildcard
	// address (which lets the kernel pick its reply's source) still works.
	t.Run("udp default, wildcard server", func(t *testing.T) {
		pcw := child.listenPacket(t, "udp", ":0")
		go serveWhoUDP(pcw)
		d := newDriver(t, child, DefaultOptions)
		var err error
		host.do(func() {
			_, err = d.Add(context.Background(), port.Spec{Proto: "udp", ParentPort: 20100, ChildPort: cport(pcw.LocalAddr())})
		})
		if err != nil {
			t.Fatal(err)
		}
		got := udpTalkConn(t, dial("udp4", v4, "127.0.0.1:20100"), "hi")
		if !strings.HasPrefix(got, "127.0.0.1:") || !strings.HasSuffix(got, " hi") {
			t.Errorf("udp from %s to a wildcard server: got %q, want a 127.0.0.1 peer", v4, got)
		}
	})
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
