package slirp4netns

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/unroot/unroot/api"
	"github.com/unroot/unroot/internal/testutil"
	"github.com/unroot/unroot/network"
	"github.com/unroot/unroot/port"
)

// startSlirp makes a network namespace on a locked thread, runs a real
// slirp4netns with an API socket for it, and returns a function that runs
// code on that thread, plus the socket path.
func startSlirp(t *testing.T) (do func(func()), sock string) {
	t.Helper()
	testutil.RequireRoot(t, "create a network namespace")
	bin, err := exec.LookPath("slirp4netns")
	if err != nil {
		t.Fatalf("slirp4netns: %v (apt-get install slirp4netns)", err)
	}
	reqs := make(chan func())
	ready := make(chan error)
	var nsPath string
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the namespace
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			ready <- err
			return
		}
		nsPath = fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), unix.Gettid())
		ready <- nil
		for f := range reqs {
			f()
		}
	}()
	if err := <-ready; err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { close(reqs) })
	do = func(f func()) {
		done := make(chan struct{})
		reqs <- func() { f(); close(done) }
		<-done
	}
	sock = filepath.Join(t.TempDir(), ".s4nn.sock")
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--configure", "--mtu=65520", "--ready-fd=3", "--api-socket", sock, "--netns-type=path", nsPath, "tap0")
	cmd.ExtraFiles = []*os.File{w}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	r.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := r.Read(make([]byte, 1)); err != nil {
		t.Fatalf("slirp4netns did not become ready: %v", err)
	}
	r.Close()
	return do, sock
}

func TestSlirp4netnsPorts(t *testing.T) {
	do, sock := startSlirp(t)
	var (
		ln  net.Listener
		err error
	)
	do(func() { ln, err = net.Listen("tcp4", "0.0.0.0:0") })
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "hi %s", c.RemoteAddr())
			c.Close()
		}
	}()
	_, cp, _ := net.SplitHostPort(ln.Addr().String())
	childPort, _ := strconv.Atoi(cp)

	ctx := context.Background()
	if _, err := New(ctx, port.Env{}); err == nil || !strings.Contains(err.Error(), "--net=slirp4netns") {
		t.Errorf("New without a socket = %v", err)
	}
	drv, err := New(ctx, port.Env{Network: apiSocket(sock)})
	if err != nil {
		t.Fatal(err)
	}
	defer drv.Close()
	if info := drv.Info(); !info.DisallowLoopbackChildIP || info.Driver != "slirp4netns" {
		t.Errorf("Info = %+v", info)
	}
	pl, _ := net.Listen("tcp4", "127.0.0.1:0")
	parentPort := pl.Addr().(*net.TCPAddr).Port
	pl.Close()
	st, err := drv.Add(ctx, port.Spec{Proto: "tcp", ParentIP: netip.MustParseAddr("127.0.0.1"), ParentPort: parentPort, ChildPort: childPort})
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(parentPort)), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	got, _ := io.ReadAll(c)
	c.Close()
	// slirp4netns rebuilds the connection: the server sees the gateway
	// address 10.0.2.2 for a host loopback client.
	if !strings.HasPrefix(string(got), "hi 10.0.2.2:") {
		t.Errorf("through slirp4netns got %q, want hi 10.0.2.2:...", got)
	}
	for _, bad := range []struct {
		spec port.Spec
		want string
	}{
		{port.Spec{Proto: "tcp6", ParentPort: 1, ChildPort: 1}, `unsupported protocol "tcp6"`},
		{port.Spec{Proto: "tcp", ParentPort: 2, ChildIP: netip.MustParseAddr("127.0.0.1"), ChildPort: 1}, "cannot reach the child's loopback"},
		{port.Spec{Proto: "tcp4", ParentIP: netip.MustParseAddr("127.0.0.1"), ParentPort: parentPort, ChildPort: 1}, fmt.Sprintf("conflict with ID %d", st.ID)},
		{port.Spec{Proto: "tcp", ParentIP: netip.MustParseAddr("::1"), ParentPort: 3, ChildPort: 1}, "IPv4 only"},
	} {
		if _, err := drv.Add(ctx, bad.spec); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("Add(%+v) = %v, want containing %q", bad.spec, err, bad.want)
		}
	}
	if ps, _ := drv.List(ctx); len(ps) != 1 || ps[0].ID != st.ID {
		t.Errorf("List = %+v", ps)
	}
	if err := drv.Remove(ctx, st.ID); err != nil {
		t.Fatal(err)
	}
	if err := drv.Remove(ctx, st.ID); err == nil || !strings.Contains(err.Error(), "unknown id") {
		t.Errorf("second Remove = %v", err)
	}
	if c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(parentPort)), time.Second); err == nil {
		c.Close()
		t.Error("dial after Remove succeeded")
	}
}

// apiSocket is a network driver with slirp4netns's API socket.
type apiSocket string

func (a apiSocket) APISocket() string { return string(a) }
func (apiSocket) Name() string        { return "slirp4netns" }
func (apiSocket) Start(context.Context, network.Child) (network.Setup, error) {
	return network.Setup{}, nil
}
func (apiSocket) Info() *api.NetworkDriverInfo { return nil }
func (apiSocket) Close() error                 { return nil }
