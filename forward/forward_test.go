package forward

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/unroot/unroot/internal/sys"
	"github.com/unroot/unroot/port"
)

// hereSource makes the "namespace" sockets in the test's own network
// namespace: the forwarding is the same, the launcher's e2e tests cover a
// real child namespace.
type hereSource struct{ closed bool }

func (h *hereSource) Socket(_ context.Context, family, sotype int) (int, error) {
	if h.closed {
		return -1, fmt.Errorf("socket: %w", port.ErrSourceClosed)
	}
	return sys.Socket(family, sotype)
}

func (h *hereSource) EnableTransparent(context.Context, bool) error { return nil }

// freePort returns a port nothing listens on now, for proto.
func freePort(t *testing.T, proto string) int {
	t.Helper()
	if proto == "udp" {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// echoServer answers each line with prefix+line, on ln.
func echoServer(t *testing.T, ln net.Listener, prefix string) {
	t.Helper()
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					io.WriteString(c, prefix+line)
				}
			}()
		}
	}()
}

func roundTrip(t *testing.T, addr, msg string) (string, error) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, msg+"\n"); err != nil {
		return "", err
	}
	return bufio.NewReader(c).ReadString('\n')
}

func TestForwardTCPAndUnix(t *testing.T) {
	f := New(&hereSource{}, nil)
	defer f.Close()
	ctx := context.Background()

	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	echoServer(t, tl, "tcp:")
	sock := filepath.Join(t.TempDir(), "svc.sock")
	ul, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	echoServer(t, ul, "unix:")

	hostPort := tl.Addr().(*net.TCPAddr).Port
	tcpNS, unixNS := freePort(t, "tcp"), freePort(t, "tcp")
	st, err := f.Add(ctx, Spec{Proto: "tcp", HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: hostPort, NSPort: tcpNS})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Add(ctx, Spec{Proto: "tcp", HostPath: sock, NSPort: unixNS}); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		addr, want string
	}{
		{fmt.Sprintf("127.0.0.1:%d", tcpNS), "tcp:hello\n"},
		{fmt.Sprintf("[::1]:%d", tcpNS), "tcp:hello\n"},
		{fmt.Sprintf("127.0.0.1:%d", unixNS), "unix:hello\n"},
	} {
		if got, err := roundTrip(t, tt.addr, "hello"); err != nil || got != tt.want {
			t.Errorf("via %s: %q, %v; want %q", tt.addr, got, err, tt.want)
		}
	}
	// Many connections at once share the relay.
	errs := make(chan error, 50)
	for i := range 50 {
		go func() {
			got, err := roundTrip(t, fmt.Sprintf("127.0.0.1:%d", tcpNS), fmt.Sprint(i))
			if err == nil && got != fmt.Sprintf("tcp:%d\n", i) {
				err = fmt.Errorf("got %q", got)
			}
			errs <- err
		}()
	}
	for range 50 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	// The port inside is taken: a second forward of it is a conflict.
	if _, err := f.Add(ctx, Spec{Proto: "tcp", HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: 1, NSPort: tcpNS}); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("conflict with ID %d", st.ID)) {
		t.Errorf("duplicate forward: %v", err)
	}
	list, _ := f.List(ctx)
	if len(list) != 2 || list[0].ID != st.ID || list[0].Spec.NSPort != tcpNS {
		t.Errorf("List = %+v", list)
	}
	// Removed: nothing listens there any more.
	if err := f.Remove(ctx, st.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", tcpNS), time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("after Remove, dial = %v, want connection refused", err)
	}
	if err := f.Remove(ctx, st.ID); err == nil || !strings.Contains(err.Error(), "unknown id") {
		t.Errorf("second Remove = %v", err)
	}
}

// A host service that is down resets the connection inside at once.
func TestForwardServiceDown(t *testing.T) {
	f := New(&hereSource{}, nil)
	defer f.Close()
	nsPort := freePort(t, "tcp")
	if _, err := f.Add(context.Background(), Spec{Proto: "tcp", HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: freePort(t, "tcp"), NSPort: nsPort}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Add(context.Background(), Spec{Proto: "tcp", HostPath: filepath.Join(t.TempDir(), "none.sock"), NSPort: freePort(t, "tcp")}); err != nil {
		t.Fatal(err)
	}
	_, err := roundTrip(t, fmt.Sprintf("127.0.0.1:%d", nsPort), "x")
	if err == nil {
		t.Fatal("a forward to a closed port answered")
	}
}

func TestForwardUDP(t *testing.T) {
	f := New(&hereSource{}, nil)
	defer f.Close()
	svc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	go func() {
		b := make([]byte, 1500)
		for {
			n, from, err := svc.ReadFromUDPAddrPort(b)
			if err != nil {
				return
			}
			svc.WriteToUDPAddrPort(append([]byte("udp:"), b[:n]...), from)
		}
	}()
	nsPort := freePort(t, "udp")
	if _, err := f.Add(context.Background(), Spec{Proto: "udp", HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: svc.LocalAddr().(*net.UDPAddr).Port, NSPort: nsPort}); err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{fmt.Sprintf("127.0.0.1:%d", nsPort), fmt.Sprintf("[::1]:%d", nsPort)} {
		c, err := net.Dial("udp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Write([]byte("ping"))
		b := make([]byte, 100)
		n, err := c.Read(b)
		c.Close()
		if err != nil || string(b[:n]) != "udp:ping" {
			t.Errorf("via %s: %q, %v", addr, b[:n], err)
		}
	}
}

func TestForwardAfterClose(t *testing.T) {
	src := &hereSource{}
	f := New(src, nil)
	f.Close()
	if _, err := f.Add(context.Background(), Spec{Proto: "tcp", HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: 1, NSPort: freePort(t, "tcp")}); !errors.Is(err, ErrClosed) {
		t.Errorf("Add after Close = %v, want ErrClosed", err)
	}
	f2 := New(&hereSource{closed: true}, nil)
	defer f2.Close()
	if _, err := f2.Add(context.Background(), Spec{Proto: "tcp", HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: 1, NSPort: 1}); !errors.Is(err, port.ErrSourceClosed) {
		t.Errorf("Add with the namespace gone = %v, want ErrSourceClosed", err)
	}
}
