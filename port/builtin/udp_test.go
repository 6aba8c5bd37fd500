package builtin

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/unroot/unroot/internal/sys"
	"github.com/unroot/unroot/internal/testutil"
	"github.com/unroot/unroot/port"
)

// echoUDP answers every datagram with the same bytes.
func echoUDP(pc net.PacketConn) {
	buf := make([]byte, 70000)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		pc.WriteTo(buf[:n], from)
	}
}

// forwardUDP publishes a fresh port to a server on 127.0.0.1 run by serve
// and returns the published address and the server's socket.
func forwardUDP(t *testing.T, serve func(net.PacketConn)) (string, net.PacketConn) {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go serve(pc)
	d := newDriver(t, hostSource{}, DefaultOptions)
	pp := freePort(t, "udp")
	if _, err := d.Add(context.Background(), port.Spec{Proto: "udp", ParentIP: netip.MustParseAddr("127.0.0.1"), ParentPort: pp, ChildPort: pc.LocalAddr().(*net.UDPAddr).Port}); err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(pp)), pc
}

// Datagrams of every size, above a 1500-byte MTU (VXLAN's 1550) up to the
// largest IPv4 datagram, cross the forward both ways intact.
func TestUDPLargeDatagrams(t *testing.T) {
	addr, _ := forwardUDP(t, echoUDP)
	c, err := net.Dial("udp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 70000)
	sent := map[int]bool{}
	for _, size := range []int{0, 1, 1400, 1550, 9000, 65000, 65507} {
		msg := sizedMsg(size)
		var got []byte
		for try := 0; try < 20 && got == nil; try++ {
			if _, err := c.Write(msg); err != nil {
				t.Fatalf("write %d bytes: %v", size, err)
			}
			c.SetReadDeadline(time.Now().Add(250 * time.Millisecond))
			for got == nil {
				n, err := c.Read(buf)
				if err != nil {
					break
				}
				// A late answer to an earlier size's repeated datagram.
				if n != size && sent[n] && bytes.Equal(buf[:n], sizedMsg(n)) {
					continue
				}
				got = buf[:n]
			}
		}
		sent[size] = true
		if got == nil {
			t.Fatalf("no answer to a %d-byte datagram", size)
		}
		if !bytes.Equal(got, msg) {
			t.Errorf("a %d-byte datagram came back as %d bytes, changed", size, len(got))
		}
	}
}

// sizedMsg is a datagram of size bytes that says its size: every byte is
// the size's low byte, the last four (if it has them) the whole size.
func sizedMsg(size int) []byte {
	msg := bytes.Repeat([]byte{byte(size)}, size)
	binary.BigEndian.PutUint32(append(msg, 0, 0, 0, 0)[max(size-4, 0):], uint32(size))
	return msg[:size]
}

// A client that sends with UDP_SEGMENT (one GSO buffer, many datagrams)
// hits the listener's GRO path; the server must see each datagram on its
// own, in order, with its own size, never glued to the next.
func TestUDPSegmentedBurst(t *testing.T) {
	type dgram struct{ n, seq int }
	got := make(chan dgram, 4096)
	addr, _ := forwardUDP(t, func(pc net.PacketConn) {
		buf := make([]byte, 70000)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			seq := -1
			if n >= 4 {
				seq = int(binary.BigEndian.Uint32(buf[:4]))
			}
			got <- dgram{n, seq}
		}
	})
	raddr, _ := net.ResolveUDPAddr("udp4", addr)
	c, err := net.DialUDP("udp4", nil, raddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const seg, full = 1400, 40
	for round := 0; round < 5; round++ {
		// 40 full datagrams and a short one, numbered.
		payload := make([]byte, full*seg+100)
		for i := 0; i <= full; i++ {
			binary.BigEndian.PutUint32(payload[i*seg:], uint32(round*1000+i))
		}
		ctl := sys.UDPSegmentControl(make([]byte, 64), seg)
		if _, _, err := c.WriteMsgUDP(payload, ctl, nil); err != nil {
			t.Fatalf("segmented send: %v", err)
		}
		for i := 0; i <= full; i++ {
			want := dgram{seg, round*1000 + i}
			if i == full {
				want.n = 100
			}
			select {
			case d := <-got:
				if d != want {
					t.Fatalf("round %d datagram %d: got %d bytes #%d, want %d bytes #%d", round, i, d.n, d.seq, want.n, want.seq)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("round %d: datagram %d of %d never arrived", round, i, full+1)
			}
		}
	}
}

// The driver in a helper process with a 64-descriptor limit: a spray from
// many source ports takes every descriptor for flows that then go idle; a
// new client must still be answered (the idlest flow gives way), not
// starve until idle flows expire 90 s later.
func TestUDPDescriptorExhaustion(t *testing.T) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	go serveWhoUDP(pc)
	pp := freePort(t, "udp")
	cmd := exec.Command(os.Args[0], "-test.run=^TestMain$")
	cmd.Env = append(os.Environ(), "UNROOT_BUILTIN_HELPER=emfile", "UNROOT_HELPER_PROTO=udp",
		fmt.Sprintf("UNROOT_HELPER_PORTS=%d:%d", pp, pc.LocalAddr().(*net.UDPAddr).Port))
	var stderr testutil.SyncBuffer
	cmd.Stderr = &stderr
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
		if t.Failed() {
			t.Logf("helper log:\n%s", stderr.String())
		}
	}()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "ready" {
		t.Fatalf("helper said %q, %v", line, err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(pp))
	raddr, _ := net.ResolveUDPAddr("udp4", addr)
	for i := 0; i < 200; i++ {
		c, err := net.DialUDP("udp4", nil, raddr)
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte("spray"))
		c.Close()
	}
	// The new clients come once the spray has taken every descriptor.
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(stderr.String(), "too many open files"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the spray never exhausted the helper's descriptors; its log:\n%s", stderr.String())
		}
	}
	for i := range 3 {
		if got := udpTalk(t, "udp4", addr, nil, "new"); !strings.HasSuffix(got, " new") {
			t.Fatalf("new client %d after the spray: got %q; helper log:\n%s", i, got, stderr.String())
		}
	}
	cmd.Process.Kill()
	cmd.Wait()
}

// BenchmarkUDPForward measures datagrams of 1400 bytes through a forward to
// a server that drains them; allocs/op must stay 0 (no allocation per
// datagram).
func BenchmarkUDPForward(b *testing.B) {
	srv, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, _, err := srv.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	d, err := New(context.Background(), port.Env{Sockets: hostSource{}})
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	pl, _ := net.ListenPacket("udp4", "127.0.0.1:0")
	pp := pl.LocalAddr().(*net.UDPAddr).Port
	pl.Close()
	if _, err := d.Add(context.Background(), port.Spec{Proto: "udp", ParentIP: netip.MustParseAddr("127.0.0.1"), ParentPort: pp, ChildPort: srv.LocalAddr().(*net.UDPAddr).Port}); err != nil {
		b.Fatal(err)
	}
	c, err := net.Dial("udp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(pp)))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	msg := make([]byte, 1400)
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := c.Write(msg); err != nil && !errorsIsRefused(err) {
			b.Fatal(err)
		}
	}
}

func errorsIsRefused(err error) bool {
	return strings.Contains(err.Error(), syscall.ECONNREFUSED.Error())
}

// A burst that fits the buffers on the way (the listener's and the
// server's, 208 KiB each at the kernel's defaults) arrives whole: every
// datagram once, in order, with its size and bytes, whether the forwarder
// relays it one by one or coalesced into segmented sends. The server
// reads nothing until the client has sent everything, so the relay's
// bursts meet a socket that does not drain. Run it under load
// (go test -count=20 with busy loops): it asserts delivery, not speed.
func TestUDPBurstDelivered(t *testing.T) {
	for _, tc := range []struct {
		name  string
		sizes []int
	}{
		// Truesize in the server's queue is about 2.3 KiB for 1400 bytes,
		// 16 KiB for 8000 and 36 KiB for 32 KiB: each burst stays under
		// 208 KiB, so nothing may be dropped anywhere.
		{"64 of 1400 bytes", repeat(1400, 64)},
		{"10 of 8000 bytes", repeat(8000, 10)},
		{"4 of 32 KiB", repeat(32768, 4)},
		{"mixed runs", append(append(append(repeat(1400, 20), 100), repeat(1200, 20)...), 9000, 1, 1400)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srvc := make(chan net.PacketConn, 1)
			addr, _ := forwardUDP(t, func(pc net.PacketConn) { srvc <- pc })
			srv := <-srvc
			// The kernel's default, whatever net.core.rmem_default says
			// (the kernel doubles what is set).
			if err := srv.(*net.UDPConn).SetReadBuffer(212992 / 2); err != nil {
				t.Fatal(err)
			}
			c, err := net.Dial("udp4", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			for i, n := range tc.sizes {
				msg := burstDatagram(i, n)
				if _, err := c.Write(msg); err != nil {
					t.Fatalf("send datagram %d: %v", i, err)
				}
			}
			buf := make([]byte, 70000)
			for i, n := range tc.sizes {
				srv.SetReadDeadline(time.Now().Add(5 * time.Second))
				got, _, err := srv.ReadFrom(buf)
				if err != nil {
					t.Fatalf("datagram %d of %d never arrived (%v): the burst fits the buffers, nothing may be dropped", i, len(tc.sizes), err)
				}
				if want := burstDatagram(i, n); !bytes.Equal(buf[:got], want) {
					seq := -1
					if got >= 4 {
						seq = int(binary.BigEndian.Uint32(buf[:4]))
					}
					t.Fatalf("datagram %d: got %d bytes (#%d), want %d bytes (#%d)", i, got, seq, n, i)
				}
			}
			srv.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			if got, _, err := srv.ReadFrom(buf); err == nil {
				t.Fatalf("a datagram of %d bytes arrived after the burst: duplicated", got)
			}
		})
	}
}

func repeat(size, n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = size
	}
	return s
}

// burstDatagram is datagram i of a burst: n bytes that start with i and
// are filled with i's low byte.
func burstDatagram(i, n int) []byte {
	b := bytes.Repeat([]byte{byte(i)}, n)
	if n >= 4 {
		binary.BigEndian.PutUint32(b, uint32(i))
	}
	return b
}
