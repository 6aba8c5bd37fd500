package handshake

import (
	"context"
	"errors"
	"io"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/unroot/unroot/network"
)

func TestRoundTrip(t *testing.T) {
	a, bf, err := Pair()
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := FromFile(bf)
	bf.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()

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

func TestDecode(t *testing.T) {
	bad := []string{``, `{}`, `{"v":2,"kind":"started"}`, `{"v":1,"kind":"nope"}`, `{"v":1,"kind":"network"}`, `[`}
	for _, s := range bad {
		if _, err := Decode([]byte(s)); err == nil {
			t.Errorf("Decode(%q) = nil error", s)
		}
	}
	m, err := Decode([]byte(`{"v":1,"kind":"started","pid":42}`))
	if err != nil || m.PID != 42 {
		t.Errorf("Decode = %+v, %v", m, err)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"v":1,"kind":"network","setup":{"IfName":"tap0","MTU":1500}}`))
	f.Add([]byte(`{"v":1,"kind":"open-tap","tapName":"tap0"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Decode(b)
		if err != nil {
			return
		}
		if m.V != Version || (m.Kind == Network && m.Setup == nil) {
			t.Fatalf("accepted invalid message %+v", m)
		}
	})
}
