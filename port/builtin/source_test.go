package builtin

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"testing"

	"github.com/unroot/unroot/internal/sys"
	"github.com/unroot/unroot/internal/testutil"
)

// hostSource hands out sockets from the test's own netns: enough for relay
// tests that need no namespace.
type hostSource struct{}

func (hostSource) Socket(ctx context.Context, family, sotype int) (int, error) {
	return sys.Socket(family, sotype)
}

func (hostSource) EnableTransparent(ctx context.Context, connmark bool) error {
	return errors.New("host source: no namespace to prepare")
}

// nsSource is what the launcher does, in-process: a locked OS thread that
// entered a fresh network namespace creates sockets there and hands them
// to the driver, which runs in the host netns. Needs root.
type nsSource struct {
	reqs chan func()
	path string // /proc/PID/task/TID/ns/net of the thread
}

func newNSSource(t *testing.T) *nsSource {
	t.Helper()
	testutil.RequireRoot(t, "create a network namespace")
	s := &nsSource{reqs: make(chan func())}
	ready := make(chan error)
	go func() {
		// The thread never unlocks: it dies with the goroutine, so the
		// namespace never leaks into other goroutines.
		runtime.LockOSThread()
		if err := sys.Unshare(sys.CLONE_NEWNET); err != nil {
			ready <- err
			return
		}
		s.path = fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), sys.Gettid())
		ready <- nil
		for f := range s.reqs {
			f()
		}
	}()
	if err := <-ready; err != nil {
		t.Fatalf("unshare netns: %v", err)
	}
	t.Cleanup(func() { close(s.reqs) })
	s.ip(t, "link", "set", "lo", "up")
	return s
}

// do runs f on the namespace thread.
func (s *nsSource) do(f func()) {
	done := make(chan struct{})
	s.reqs <- func() { f(); close(done) }
	<-done
}

func (s *nsSource) ip(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command("nsenter", append([]string{"--net=" + s.path, "ip"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %v in the test netns: %v: %s", args, err, out)
	}
}

func (s *nsSource) Socket(ctx context.Context, family, sotype int) (int, error) {
	var (
		fd  int
		err error
	)
	s.do(func() { fd, err = sys.Socket(family, sotype) })
	return fd, err
}

// EnableTransparent routes every packet sent from a loopback address to
// local delivery, so a server on 127.0.0.1/::1 answering a foreign
// (client) address reaches the transparent socket instead of the default
// route. Packets from loopback may never leave a host anyway. It sets up no
// connmark: the tests' servers listen on loopback.
func (s *nsSource) EnableTransparent(ctx context.Context, connmark bool) error {
	for _, args := range [][]string{
		{"-4", "route", "add", "local", "default", "dev", "lo", "table", "100"},
		{"-4", "rule", "add", "from", "127.0.0.0/8", "lookup", "100", "priority", "100"},
		{"-6", "route", "add", "local", "default", "dev", "lo", "table", "100"},
		{"-6", "rule", "add", "from", "::1", "lookup", "100", "priority", "100"},
	} {
		out, err := exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + s.path, "ip"}, args...)...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("ip %v: %w: %s", args, err, out)
		}
	}
	return nil
}

// listen opens a listener inside the namespace.
func (s *nsSource) listen(t *testing.T, network, addr string) net.Listener {
	t.Helper()
	var (
		ln  net.Listener
		err error
	)
	s.do(func() { ln, err = net.Listen(network, addr) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

func (s *nsSource) listenPacket(t *testing.T, network, addr string) net.PacketConn {
	t.Helper()
	var (
		pc  net.PacketConn
		err error
	)
	s.do(func() { pc, err = net.ListenPacket(network, addr) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc
}
