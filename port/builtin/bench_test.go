package builtin

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"testing"

	"github.com/unroot/unroot/port"
)

// BenchmarkConnect measures one short connection through a forward: dial,
// one byte back, close (wrk -H 'Connection: close' in miniature).
func BenchmarkConnect(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte{1})
			c.Close()
		}
	}()
	d, err := New(context.Background(), port.Env{Sockets: hostSource{}})
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	pl, _ := net.Listen("tcp", "127.0.0.1:0")
	pp := pl.Addr().(*net.TCPAddr).Port
	pl.Close()
	if _, err := d.Add(context.Background(), port.Spec{Proto: "tcp", ParentIP: netip.MustParseAddr("127.0.0.1"), ParentPort: pp, ChildPort: ln.Addr().(*net.TCPAddr).Port}); err != nil {
		b.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(pp))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		buf := make([]byte, 1)
		for pb.Next() {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				b.Error(err)
				return
			}
			if _, err := c.Read(buf); err != nil {
				b.Error(err)
			}
			c.Close()
		}
	})
}
