package notify

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"net"
)

// fakeSystemd is a real datagram socket standing in for systemd's
// NOTIFY_SOCKET; like systemd it asks the kernel for each sender's pid.
type fakeSystemd struct {
	conn *net.UnixConn
	path string
}

func newFakeSystemd(t *testing.T) *fakeSystemd {
	t.Helper()
	path := filepath.Join(t.TempDir(), "systemd-notify.sock")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	raw, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	raw.Control(func(fd uintptr) {
		if err := syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_PASSCRED, 1); err != nil {
			t.Fatal(err)
		}
	})
	return &fakeSystemd{conn: c, path: path}
}

// recv returns the next message and its sender's pid.
func (f *fakeSystemd) recv(t *testing.T) (string, int32) {
	t.Helper()
	buf := make([]byte, 4096)
	oob := make([]byte, syscall.CmsgSpace(syscall.SizeofUcred))
	f.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, oobn, _, _, err := f.conn.ReadMsgUnix(buf, oob)
	if err != nil {
		t.Fatalf("fake systemd got nothing: %v", err)
	}
	msgs, err := syscall.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) == 0 {
		t.Fatalf("no credentials with the message: %v", err)
	}
	cred, err := syscall.ParseUnixCredentials(&msgs[0])
	if err != nil {
		t.Fatal(err)
	}
	return string(buf[:n]), cred.Pid
}

func (f *fakeSystemd) expectNothing(t *testing.T) {
	t.Helper()
	buf := make([]byte, 4096)
	f.conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, err := f.conn.Read(buf); err == nil {
		t.Fatalf("unexpected notification %q", buf[:n])
	}
}

func startRelay(t *testing.T, up string, mode Mode) *Relay {
	t.Helper()
	r, err := New(Config{Path: filepath.Join(t.TempDir(), "notify.sock"), Upstream: up, Mode: mode})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// notifyFrom runs systemd-notify (the real client) with the relay's
// environment, optionally inside a new user namespace as the launcher's
// command would be.
func notifyFrom(t *testing.T, r *Relay, userns bool, args ...string) int {
	t.Helper()
	cmd := exec.Command("systemd-notify", args...)
	cmd.Env = r.CommandEnv(append(os.Environ(), "NOTIFY_SOCKET=/elsewhere", "WATCHDOG_PID=1"))
	if userns {
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER,
			UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
			GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}}}
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("systemd-notify %v: %v: %s", args, err, out)
	}
	return cmd.Process.Pid
}

func TestRelayForwardsAsOwnPID(t *testing.T) {
	sd := newFakeSystemd(t)
	r := startRelay(t, sd.path, ModeNotify)
	child := notifyFrom(t, r, true, "--ready", "--status=serving")
	msg, pid := sd.recv(t)
	if pid != int32(os.Getpid()) || pid == int32(child) {
		t.Errorf("sender pid = %d, want unroot's own %d (command was %d)", pid, os.Getpid(), child)
	}
	if !strings.Contains(msg, "READY=1") || !strings.Contains(msg, "STATUS=serving") {
		t.Errorf("relayed %q, want READY=1 and STATUS=serving", msg)
	}
	if strings.Contains(msg, "MAINPID") {
		t.Errorf("relayed MAINPID: %q", msg)
	}
}

func TestRelayPortsModeSendsReadyItself(t *testing.T) {
	sd := newFakeSystemd(t)
	r := startRelay(t, sd.path, ModePorts)
	notifyFrom(t, r, false, "--ready")
	sd.expectNothing(t)
	notifyFrom(t, r, false, "--status=loading")
	if msg, _ := sd.recv(t); msg != "STATUS=loading" {
		t.Errorf("relayed %q, want STATUS=loading", msg)
	}
	if err := r.Ready("ports published"); err != nil {
		t.Fatal(err)
	}
	if msg, pid := sd.recv(t); msg != "READY=1\nSTATUS=ports published" || pid != int32(os.Getpid()) {
		t.Errorf("got %q from %d, want READY=1 with status from %d", msg, pid, os.Getpid())
	}
	if err := r.Ready(""); err != nil {
		t.Fatal(err)
	}
	sd.expectNothing(t)
}

func TestRelayCloseRemovesSocket(t *testing.T) {
	sd := newFakeSystemd(t)
	r := startRelay(t, sd.path, ModeNotify)
	if fi, err := os.Stat(r.Path()); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("relay socket: %v %v, want mode 0600", fi, err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(r.Path()); !os.IsNotExist(err) {
		t.Errorf("socket left behind after Close: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
}

func TestRelayStopsWithContext(t *testing.T) {
	sd := newFakeSystemd(t)
	ctx, cancel := context.WithCancel(context.Background())
	r, err := New(Config{Path: filepath.Join(t.TempDir(), "n.sock"), Upstream: sd.path})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	cancel()
	done := make(chan struct{})
	go func() { r.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close hung after the context ended")
	}
}

func TestCommandEnv(t *testing.T) {
	r := &Relay{cfg: Config{Path: "/s/notify.sock"}}
	got := r.CommandEnv([]string{"A=1", "NOTIFY_SOCKET=/run/systemd/notify", "WATCHDOG_PID=7", "WATCHDOG_USEC=5"})
	want := "A=1 WATCHDOG_USEC=5 NOTIFY_SOCKET=/s/notify.sock"
	if strings.Join(got, " ") != want {
		t.Errorf("CommandEnv = %v, want %s", got, want)
	}
}

func TestNewRejects(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Path: "/x", Upstream: ""}, "NOTIFY_SOCKET is not set"},
		{Config{Upstream: "/u"}, "no socket path"},
		{Config{Path: "/" + strings.Repeat("a", 120), Upstream: "/u"}, "shorter --state-dir"},
		{Config{Path: "/x", Upstream: "/u", Mode: "soon"}, "want notify"},
	} {
		t.Setenv("NOTIFY_SOCKET", "")
		if _, err := New(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v, want error with %q", tc.cfg, err, tc.want)
		}
	}
}

func TestPackageReady(t *testing.T) {
	sd := newFakeSystemd(t)
	t.Setenv("NOTIFY_SOCKET", sd.path)
	if ok, err := Ready(); !ok || err != nil {
		t.Fatalf("Ready = %v, %v", ok, err)
	}
	if msg, _ := sd.recv(t); msg != "READY=1" {
		t.Errorf("got %q", msg)
	}
	t.Setenv("NOTIFY_SOCKET", "")
	if ok, err := Ready(); ok || err != nil {
		t.Errorf("Ready without NOTIFY_SOCKET = %v, %v; want false, nil", ok, err)
	}
}
