package relay

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// rawListener returns a non-blocking listening socket, the engine's to
// close, and its address.
func rawListener(t *testing.T) (int, *net.TCPAddr) {
	t.Helper()
	ln := listen(t)
	rc, err := ln.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	fd := -1
	rc.Control(func(lfd uintptr) { fd, err = unix.FcntlInt(lfd, unix.F_DUPFD_CLOEXEC, 0) })
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().(*net.TCPAddr)
	ln.Close() // the copy keeps it listening
	return fd, addr
}

func echoOnce(t *testing.T, client, server net.Conn, msg string) {
	t.Helper()
	deadline(t, client, server)
	if _, err := client.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(server, buf); err != nil || string(buf) != msg {
		t.Fatalf("server read %q, %v; want %q", buf, err, msg)
	}
}

// TestListenerPauseResume: a listener accepts on the loop while its
// AcceptFunc can take connections, leaves them in the backlog while it is
// paused, takes them after Resume, and once closed refuses new ones while
// the relayed ones keep working.
func TestListenerPauseResume(t *testing.T) {
	e := newEngine(t)
	g := e.NewGroup()
	backend := listen(t)
	lfd, addr := rawListener(t)

	tokens := 1 // the loop's while watched, the test's while paused
	paused := make(chan struct{}, 1)
	accept := func(lfd int, add func(Pair) error) bool {
		for {
			if tokens == 0 {
				paused <- struct{}{}
				return false
			}
			fd, _, err := unix.Accept4(lfd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
			if errors.Is(err, unix.EAGAIN) {
				return true
			}
			if err != nil {
				t.Errorf("accept4: %v", err)
				return true
			}
			tokens--
			child, err := dialRaw(backend.Addr().(*net.TCPAddr))
			if err != nil {
				t.Errorf("dial the backend: %v", err)
				unix.Close(fd)
				continue
			}
			if err := add(Pair{Client: fd, Child: child}); err != nil {
				t.Errorf("add: %v", err)
			}
		}
	}
	ln, err := g.Listen(lfd, accept)
	if err != nil {
		t.Fatal(err)
	}
	ln.Resume(func(err error) { t.Errorf("Resume: %v", err) })

	c1, err := net.DialTCP("tcp", nil, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	s1, err := backend.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	defer s1.Close()
	echoOnce(t, c1, s1, "first")

	// The second connection completes its handshake in the backlog, and
	// the AcceptFunc pauses without taking it.
	c2, err := net.DialTCP("tcp", nil, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	<-paused
	tokens = 1
	ln.Resume(func(err error) { t.Errorf("Resume: %v", err) })
	s2, err := backend.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	echoOnce(t, c2, s2, "second")

	ln.Close()
	if c, err := net.DialTCP("tcp", nil, addr); err == nil {
		c.Close()
		t.Fatal("a closed listener still accepts")
	}
	echoOnce(t, c1, s1, "still relayed")
	ln.Close() // a second Close returns
}

// TestListenClosedGroup: Listen on a closed group fails and closes the
// socket it was given; a listener of a closed engine closes at once, and
// Resume says it cannot watch it.
func TestListenClosedGroup(t *testing.T) {
	e := newEngine(t)
	g := e.NewGroup()
	g.Close()
	lfd, _ := rawListener(t)
	if _, err := g.Listen(lfd, nil); err == nil {
		t.Fatal("Listen on a closed group succeeded")
	}
	if _, err := unix.FcntlInt(uintptr(lfd), unix.F_GETFD, 0); !errors.Is(err, unix.EBADF) {
		t.Errorf("the listening socket is still open after a failed Listen: %v", err)
	}

	e2, err := NewEngine(1, nil)
	if err != nil {
		t.Fatal(err)
	}
	lfd2, addr := rawListener(t)
	ln, err := e2.NewGroup().Listen(lfd2, func(int, func(Pair) error) bool { return true })
	if err != nil {
		t.Fatal(err)
	}
	ln.Resume(func(err error) { t.Errorf("Resume: %v", err) })
	e2.Close()
	failed := make(chan error, 1)
	ln.Resume(func(err error) { failed <- err })
	select {
	case <-failed:
	case <-time.After(5 * time.Second):
		t.Error("Resume on a closed engine did not fail; its caller would wait for connections that never come")
	}
	ln.Close()
	if c, err := net.DialTCP("tcp", nil, addr); err == nil {
		c.Close()
		t.Fatal("the listener of a closed engine still accepts")
	}
}
