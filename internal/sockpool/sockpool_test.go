package sockpool

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/unroot/unroot/internal/handshake"
	"github.com/unroot/unroot/internal/sys"
	"github.com/unroot/unroot/port"
)

// serve connects a client to srv over a socketpair. stop closes the client
// and waits for srv to end.
func serve(t *testing.T, srv *Server) (cl *Client, ctx context.Context, stop func()) {
	t.Helper()
	a, bf, err := handshake.Pair()
	if err != nil {
		t.Fatal(err)
	}
	b, err := handshake.FromFile(bf)
	bf.Close()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, b) }()
	cl = NewClient(a)
	return cl, ctx, func() {
		cl.Close()
		cancel()
		<-done
	}
}

func TestPool(t *testing.T) {
	var calls atomic.Int32
	cl, ctx, stop := serve(t, &Server{
		InNetNS:     func(fn func() error) error { calls.Add(1); return fn() },
		NewSocket:   sys.Socket,
		Transparent: func(bool, string) error { return errors.New("no iptables here") },
	})
	for i := range Batch + 1 {
		fd, err := cl.Socket(ctx, syscall.AF_INET, syscall.SOCK_STREAM)
		if err != nil {
			t.Fatalf("socket %d: %v", i, err)
		}
		var st syscall.Stat_t
		if err := syscall.Fstat(fd, &st); err != nil || st.Mode&syscall.S_IFMT != syscall.S_IFSOCK {
			t.Errorf("socket %d: not a socket (%v)", i, err)
		}
		// Handed over raw, the descriptor must still be non-blocking.
		if fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0); err != nil || fl&unix.O_NONBLOCK == 0 {
			t.Errorf("socket %d: not non-blocking (flags %#x, %v)", i, fl, err)
		}
		syscall.Close(fd)
	}
	if calls.Load() != 2 {
		t.Errorf("%d round trips for %d sockets, want 2", calls.Load(), Batch+1)
	}
	if err := cl.EnableTransparent(ctx, false); err == nil || cl.transparent {
		t.Errorf("EnableTransparent = %v, want the server's error", err)
	}
	if _, err := cl.Socket(ctx, 99, syscall.SOCK_STREAM); err == nil {
		t.Error("bad family accepted")
	}
	stop()
}

// Once the namespace init has gone, the client says so in a way the port
// driver can tell from a shortage that a retry may cure.
func TestSourceClosed(t *testing.T) {
	a, bf, err := handshake.Pair()
	if err != nil {
		t.Fatal(err)
	}
	cl := NewClient(a)
	defer cl.Close()
	bf.Close() // the init's end
	_, err = cl.Socket(t.Context(), syscall.AF_INET, syscall.SOCK_STREAM)
	if !errors.Is(err, port.ErrSourceClosed) {
		t.Errorf("Socket after the init's end closed = %v, want port.ErrSourceClosed", err)
	}
	if got := closed(syscall.EMFILE); errors.Is(got, port.ErrSourceClosed) {
		t.Errorf("closed(EMFILE) = %v: a shortage is not a closed source", got)
	}
}

func FuzzDecodeRequest(f *testing.F) {
	f.Add([]byte(`{"op":"socket","family":2,"type":1,"n":16}`))
	f.Add([]byte(`{"op":"transparent"}`))
	f.Add([]byte(`{"op":"transparent","connmark":true}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeRequest(b)
		if err == nil && r.Op == "socket" && (r.N < 1 || r.N > maxBatch) {
			t.Fatalf("accepted count %d", r.N)
		}
	})
}

// A helper that hangs is given up on, so the connections waiting for the
// preparation go on plainly instead of waiting for good.
func TestIptablesHangs(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "iptables"), []byte("#!/bin/sh\nexec /bin/sleep 60\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir)
	defer func(d time.Duration) { helperTimeout = d }(helperTimeout)
	helperTimeout = 200 * time.Millisecond
	t0 := time.Now()
	err := iptables("iptables", []string{"-t", "mangle", "-C", "OUTPUT"})
	if err == nil || !strings.Contains(err.Error(), "no answer within 200ms") {
		t.Errorf("iptables = %v, want no answer within 200ms", err)
	}
	if d := time.Since(t0); d > 5*time.Second {
		t.Errorf("iptables returned after %v", d)
	}
}

// The child prepares policy routing once and the connmark rules once: a
// request for less than what is done costs no round trip.
func TestEnableTransparentOnceEach(t *testing.T) {
	seen := make(chan bool, 10)
	cl, ctx, stop := serve(t, &Server{
		InNetNS:   func(fn func() error) error { return fn() },
		NewSocket: sys.Socket,
		Transparent: func(connmark bool, firewall string) error {
			if firewall != "nft" {
				t.Errorf("firewall %q reached the child, want nft", firewall)
			}
			seen <- connmark
			return nil
		},
	})
	cl.SetFirewall("nft")
	for _, connmark := range []bool{false, false, true, true, false} {
		if err := cl.EnableTransparent(ctx, connmark); err != nil {
			t.Fatalf("EnableTransparent(%v): %v", connmark, err)
		}
	}
	stop()
	close(seen)
	var got []bool
	for c := range seen {
		got = append(got, c)
	}
	if len(got) != 2 || got[0] || !got[1] {
		t.Errorf("the child was asked %v, want [false true]", got)
	}
}
