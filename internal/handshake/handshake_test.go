package handshake

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/unroot/unroot/internal/operr"
	"github.com/unroot/unroot/network"
)

// connPair returns both ends of a Pair, closed when the test ends.
func connPair(t *testing.T) (a, b *Conn) {
	t.Helper()
	a, bf, err := Pair()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	b, err = FromFile(bf)
	bf.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return a, b
}

func TestRoundTrip(t *testing.T) {
	a, b := connPair(t)

	setup := &network.Setup{IfName: "tap0", Addr: netip.MustParsePrefix("10.0.2.100/24"), MTU: 65520}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := a.Send(Msg{Kind: Network, Setup: setup}, w); err != nil {
		t.Fatal(err)
	}
	w.Close()
	m, files, err := b.Expect(context.Background(), Network)
	if err != nil {
		t.Fatal(err)
	}
	if m.Setup.Addr != setup.Addr || m.Setup.IfName != "tap0" || m.Setup.MTU != 65520 {
		t.Errorf("setup = %+v, want %+v", m.Setup, setup)
	}
	if len(files) != 1 {
		t.Fatalf("got %d files, want 1", len(files))
	}
	files[0].Write([]byte("x"))
	files[0].Close()
	buf := make([]byte, 1)
	if n, _ := r.Read(buf); n != 1 || buf[0] != 'x' {
		t.Errorf("passed fd does not reach the pipe")
	}

	if err := b.Send(Msg{Kind: Error, Err: "mount /proc: permission denied"}); err != nil {
		t.Fatal(err)
	}
	_, _, err = a.Recv(context.Background())
	var pe *PeerError
	if !errors.As(err, &pe) || pe.Msg != "mount /proc: permission denied" {
		t.Errorf("Recv error = %v, want the peer's message", err)
	}
	// A typed error arrives with its operation and errno.
	sent := operr.Errorf(operr.Tun, "tap0", "open tap tap0: %w", syscall.EACCES)
	if err := b.Send(ErrorMsg(fmt.Errorf("serve: %w", sent))); err != nil {
		t.Fatal(err)
	}
	_, _, err = a.Recv(context.Background())
	var oe *operr.Error
	if !errors.As(err, &oe) || oe.Op != operr.Tun || oe.Subject != "tap0" || !errors.Is(err, syscall.EACCES) || err.Error() != "serve: open tap tap0: permission denied" {
		t.Errorf("Recv error = %v (%#v), want the typed tun error", err, err)
	}

	if err := a.Send(Msg{Kind: Error, Err: strings.Repeat("x", MaxMsg)}); err == nil {
		t.Error("Send of a message over MaxMsg = nil error; the reader would see it truncated")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, _, err := a.Recv(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Recv with no message = %v, want deadline exceeded", err)
	}
	b.Close()
	if _, _, err := a.Recv(context.Background()); !errors.Is(err, io.EOF) {
		t.Errorf("Recv after peer close = %v, want EOF", err)
	}
}

// A message sent before ctx ended is delivered even if ctx has ended by
// the time it is read: the launcher's start context ends when the init
// exits, and the init's Started report before a fast command's exit must
// not read as a failed start.
func TestQueuedBeforeCancel(t *testing.T) {
	a, b := connPair(t)
	if err := b.Send(Msg{Kind: Started, PID: 42}); err != nil {
		t.Fatal(err)
	}
	b.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	// What ctx's end does, done before the read rather than racing it.
	a.c.SetReadDeadline(time.Unix(1, 0))
	m, _, err := a.Expect(ctx, Started)
	if err != nil || m.PID != 42 {
		t.Fatalf("Expect after cancel = %+v, %v; want the queued Started", m, err)
	}
	if _, _, err := a.Recv(ctx); err == nil {
		t.Error("Recv with nothing queued and ctx ended = nil error")
	}
}

func TestDecode(t *testing.T) {
	full := Msg{V: Version, Kind: Network, Setup: &network.Setup{
		IfName: "tap0", Addr: netip.MustParsePrefix("10.0.2.100/24"), Gateway: netip.MustParseAddr("10.0.2.2"),
		DNS: []netip.Addr{netip.MustParseAddr("10.0.2.3")}, MTU: 65520, ConfiguredByDriver: true,
	}}
	good := Encode(full)
	bad := map[string][]byte{
		"empty":        nil,
		"old version":  Encode(Msg{V: 1, Kind: Started}),
		"unknown kind": Encode(Msg{V: Version, Kind: "nope"}),
		"no setup":     Encode(Msg{V: Version, Kind: Network}),
		"truncated":    good[:len(good)-1],
		"trailing":     append(append([]byte{}, good...), 0),
		"json":         []byte(`{"v":1,"kind":"started"}`),
	}
	for name, b := range bad {
		if m, err := Decode(b); err == nil {
			t.Errorf("%s: Decode = %+v, nil error", name, m)
		}
	}
	m, err := Decode(Encode(Msg{V: Version, Kind: Started, PID: 42}))
	if err != nil || m.PID != 42 || m.Kind != Started {
		t.Errorf("Decode = %+v, %v", m, err)
	}
	m, err = Decode(good)
	if err != nil || !reflect.DeepEqual(m, full) {
		t.Errorf("Decode = %+v, %v; want %+v", m, err, full)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(Encode(Msg{V: Version, Kind: Network, Setup: &network.Setup{IfName: "tap0", MTU: 1500, DNS: []netip.Addr{netip.MustParseAddr("10.0.2.3")}}}))
	f.Add(Encode(Msg{V: Version, Kind: OpenTap, TapName: "tap0", VnetHdr: true}))
	f.Add([]byte(`{"v":1,"kind":"open-tap","tapName":"tap0"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Decode(b)
		if err != nil {
			return
		}
		if m.V != Version || (m.Kind == Network && m.Setup == nil) {
			t.Fatalf("accepted invalid message %+v", m)
		}
		// What decodes encodes back to an equal message.
		m2, err := Decode(Encode(m))
		if err != nil || !reflect.DeepEqual(m, m2) {
			t.Fatalf("round trip of %+v: %+v, %v", m, m2, err)
		}
	})
}
