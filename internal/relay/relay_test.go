package relay

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"net"
	"testing"
	"time"
)

// pair returns the two ends of a loopback TCP connection.
func pair(t testing.TB) (*net.TCPConn, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ch := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		ch <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s := <-ch
	if s == nil {
		t.Fatal("accept failed")
	}
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

// relayed sets up client <-> [a relay b] <-> server and returns client and server ends.
func relayed(t testing.TB, ctx context.Context) (client, server *net.TCPConn, done <-chan error) {
	client, a := pair(t)
	b, server := pair(t)
	ch := make(chan error, 1)
	go func() {
		_, err := Run(ctx, a, b)
		ch <- err
	}()
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server, ch
}

func TestHalfClose(t *testing.T) {
	client, server, done := relayed(t, context.Background())
	if _, err := client.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if err := client.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(server) // ends only if the FIN was passed on
	if err != nil || string(got) != "hello" {
		t.Fatalf("server read %q, %v; want hello, EOF", got, err)
	}
	// The reverse direction still works after the half-close.
	if _, err := server.Write([]byte("world")); err != nil {
		t.Fatal(err)
	}
	server.Close()
	got, err = io.ReadAll(client)
	if err != nil || string(got) != "world" {
		t.Fatalf("client read %q, %v; want world, EOF", got, err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after both sides closed")
	}
}

func TestBulkBothWays(t *testing.T) {
	client, server, done := relayed(t, context.Background())
	data := make([]byte, 32<<20)
	for i := range data {
		data[i] = byte(i * 7)
	}
	want := sha256.Sum256(data)
	echoErr := make(chan error, 1)
	go func() {
		// Echo everything back, then close.
		_, err := io.Copy(server, server)
		server.CloseWrite()
		echoErr <- err
	}()
	go func() {
		client.Write(data)
		client.CloseWrite()
	}()
	h := sha256.New()
	n, err := io.Copy(h, client)
	if err != nil || n != int64(len(data)) {
		t.Fatalf("read back %d bytes, %v; want %d", n, err, len(data))
	}
	if !bytes.Equal(h.Sum(nil), want[:]) {
		t.Fatal("echoed data differs")
	}
	if err := <-echoErr; err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

func TestCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	client, _, done := relayed(t, ctx)
	cancel()
	select {
	case err := <-done:
		if err != context.Canceled {
			t.Fatalf("Run after cancel = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := client.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("client read after cancel = %v, want EOF", err)
	}
}

func TestResetAbortsOtherSide(t *testing.T) {
	client, server, done := relayed(t, context.Background())
	server.SetLinger(0)
	server.Close() // RST
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after a reset")
	}
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := client.Read(make([]byte, 1)); err == nil {
		t.Fatal("client read after server reset succeeded")
	}
}

func BenchmarkRelay(b *testing.B) {
	client, server, _ := relayed(b, context.Background())
	buf := make([]byte, 1<<20)
	go io.Copy(io.Discard, server)
	b.SetBytes(int64(len(buf)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := client.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDirect(b *testing.B) {
	client, server := pair(b)
	defer client.Close()
	defer server.Close()
	buf := make([]byte, 1<<20)
	go io.Copy(io.Discard, server)
	b.SetBytes(int64(len(buf)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := client.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
}
