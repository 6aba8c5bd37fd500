package bypass

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/unroot/unroot/internal/lograte"
	"github.com/unroot/unroot/internal/seccomp"
	"github.com/unroot/unroot/internal/testutil"
)

// testSupervisor is a Supervisor, not started, whose listener is fd and
// whose log goes to the returned buffer.
func testSupervisor(t *testing.T, fd int) (*Supervisor, *bytes.Buffer) {
	t.Helper()
	var buf bytes.Buffer
	s := &Supervisor{
		cfg:    Config{Listener: seccomp.NewListener(fd)},
		log:    slog.New(slog.NewTextHandler(&buf, nil)),
		ctx:    context.Background(),
		warned: map[string]bool{},
		limits: map[string]*lograte.Limiter{},
	}
	return s, &buf
}

// TestFallbackContinuesOnValidError: when the listener cannot say whether
// the call still waits (any error but ErrGone), fallback still lets the
// call go on; returning would leave the program hanging. The listener here
// is an eventfd, on which every seccomp ioctl fails with ENOTTY: the
// warning that Continue failed proves it was tried.
func TestFallbackContinuesOnValidError(t *testing.T) {
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	s, buf := testSupervisor(t, fd)
	s.fallback(seccomp.Notif{ID: 1, Pid: 1}, "test", "a test call", errors.New("cause"))
	out := buf.String()
	if !strings.Contains(out, "a test call runs inside the namespace") {
		t.Errorf("no fallback warning: %q", out)
	}
	if !strings.Contains(out, "let a trapped call continue") {
		t.Errorf("the call was not let go on (no Continue tried): %q", out)
	}
}

// TestNsSocketSwapped: nsSocket tells the namespace's sockets, sockets
// swapped in a moment ago (host) and those of a third network namespace
// (not host) apart, and connects a remembered redirected socket again only
// for a connect: a send on it must reach sendHost, not be answered as a
// restarted connect (which dropped the datagram with "0 bytes sent").
func TestNsSocketSwapped(t *testing.T) {
	testutil.RequireRoot(t, "SIOCGSKNS (which socket belongs to which network namespace) needs CAP_NET_ADMIN")
	srv, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	target := netip.MustParseAddrPort(srv.LocalAddr().String())
	sock := func() int {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Close(fd) })
		return fd
	}
	runtime.LockOSThread() // the notifications name this thread
	defer runtime.UnlockOSThread()
	tid := unix.Gettid()
	notif := func(nr int, fd int) seccomp.Notif {
		return seccomp.Notif{Pid: uint32(tid), Nr: int32(nr), Args: [6]uint64{uint64(fd)}}
	}

	s, _ := testSupervisor(t, -1)
	s.swapped = map[uint64]swap{}
	s.cfg.NetNS = nsInode(os.Getpid())
	inside := sock()
	ns, err := s.nsSocket(notif(unix.SYS_SENDTO, inside))
	if err != nil || !ns.ok || ns.host || ns.w != nil {
		t.Errorf("the namespace's socket: %+v, %v; want ok", ns, err)
	}
	if ns.ok {
		unix.Close(ns.fd)
	}

	// From here this process's network namespace plays a third one.
	s.cfg.NetNS = 1
	third := sock()
	if ns, err := s.nsSocket(notif(unix.SYS_SENDTO, third)); err != nil || ns.ok || ns.host || ns.w != nil {
		t.Errorf("a third namespace's socket: %+v, %v; want neither ok nor host", ns, err)
	}
	swapped := sock()
	s.remember(swapped, swap{redirect: target, family: unix.AF_INET})
	ns, err = s.nsSocket(notif(unix.SYS_SENDTO, swapped))
	if err != nil || ns.ok || !ns.host || ns.w == nil || ns.w.again {
		t.Errorf("a send on a socket swapped for a redirected connect: %+v, %v; want host, not connected again", ns, err)
	}
	if _, err := unix.Getpeername(swapped); err == nil {
		t.Errorf("a send connected the socket")
	}
	ns, err = s.nsSocket(notif(unix.SYS_CONNECT, swapped))
	if err != nil || !ns.host || ns.w == nil || !ns.w.again || ns.w.errno != 0 {
		t.Errorf("a restarted connect on a socket swapped for a redirected connect: %+v, %v; want connected again", ns, err)
	}
	if sa, err := unix.Getpeername(swapped); err != nil || fromSockaddr(sa) != target {
		t.Errorf("peer after the restarted connect: %v, %v; want %v", sa, err, target)
	}
}

// TestSupervisorStops: when receiving notifications fails, the supervisor
// says that it stopped, what that does and what to do, and closes the
// listener, so the command's trapped calls fail with ENOSYS instead of
// waiting for good. The listener is a readable eventfd: poll says a
// notification waits, the receive ioctl fails with ENOTTY.
func TestSupervisorStops(t *testing.T) {
	fd, err := unix.Eventfd(1, unix.EFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	var buf testutil.SyncBuffer
	s, err := Start(Config{Listener: seccomp.NewListener(fd), Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	if err != nil {
		unix.Close(fd)
		t.Fatal(err)
	}
	defer s.Close()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(buf.String(), "supervisor stopped") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	out := buf.String()
	for _, want := range []string{"bypass: supervisor stopped; trapped calls now fail with ENOSYS: receive seccomp notification", "restart the command, or run it without --bypass"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	// The loop closes the listener before it logs.
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != unix.EBADF {
		t.Errorf("the listener is still open (F_GETFD: %v)", err)
	}
}
