package sys

import (
	"encoding/binary"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func groCmsg(size int) []byte {
	b := make([]byte, 4)
	binary.NativeEndian.PutUint32(b, uint32(size))
	return cmsg(unix.IPPROTO_UDP, unix.UDP_GRO, b)
}

func TestParseUDPControl(t *testing.T) {
	for _, tc := range []struct {
		name    string
		oob     []byte
		wantDst string
		wantGSO int
	}{
		{"none", nil, "", 0},
		{"pktinfo", cmsg(unix.IPPROTO_IP, unix.IP_PKTINFO, inPktinfo("10.0.0.1", "198.18.0.1")), "198.18.0.1", 0},
		{"gro", groCmsg(1400), "", 1400},
		{"pktinfo and gro", concat(cmsg(unix.IPPROTO_IP, unix.IP_PKTINFO, inPktinfo("10.0.0.1", "192.0.2.7")), groCmsg(1550)), "192.0.2.7", 1550},
		{"gro and v6 pktinfo", concat(groCmsg(9000), cmsg(unix.IPPROTO_IPV6, unix.IPV6_PKTINFO, in6Pktinfo("::ffff:192.0.2.9", 2))), "192.0.2.9", 9000},
		{"short header", []byte{1, 2, 3}, "", 0},
		{"length past the end", func() []byte { b := groCmsg(1400); b[0] = 200; return b }(), "", 0},
		{"length below the header", func() []byte { b := groCmsg(1400); b[0] = 3; return b }(), "", 0},
	} {
		dst, gso := ParseUDPControl(tc.oob)
		var want netip.Addr
		if tc.wantDst != "" {
			want = netip.MustParseAddr(tc.wantDst)
		}
		if dst != want || gso != tc.wantGSO {
			t.Errorf("%s: got %v, %d; want %v, %d", tc.name, dst, gso, want, tc.wantGSO)
		}
	}
}

func TestParseUDPControlAllocs(t *testing.T) {
	oob := concat(cmsg(unix.IPPROTO_IP, unix.IP_PKTINFO, inPktinfo("10.0.0.1", "198.18.0.1")), groCmsg(1400))
	if n := testing.AllocsPerRun(100, func() { ParseUDPControl(oob) }); n != 0 {
		t.Errorf("ParseUDPControl allocates %v times a call, want 0", n)
	}
}

func FuzzParseUDPControl(f *testing.F) {
	f.Add([]byte(nil))
	f.Add(groCmsg(1400))
	f.Add(concat(cmsg(unix.IPPROTO_IP, unix.IP_PKTINFO, inPktinfo("10.0.0.1", "198.18.0.1")), groCmsg(1550)))
	f.Fuzz(func(t *testing.T, oob []byte) {
		// Control buffers from the kernel are aligned; so is this copy.
		b := make([]byte, len(oob), len(oob)+8)
		copy(b, oob)
		ParseUDPControl(b)
	})
}

func sysctlInt(t *testing.T, name string) int {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/net/core/" + name)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// udpSocket is a scratch AF_INET datagram socket, closed with the test.
func udpSocket(t *testing.T) int {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

// canForceBuffers probes SO_RCVBUFFORCE on a scratch socket: the kernel
// allows it with CAP_NET_ADMIN in the initial user namespace, whoever the
// test runs as.
func canForceBuffers(t *testing.T) bool {
	t.Helper()
	err := unix.SetsockoptInt(udpSocket(t), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 1<<16)
	switch err {
	case nil:
		return true
	case unix.EPERM:
		return false
	}
	t.Fatalf("probe SO_RCVBUFFORCE: %v", err)
	return false
}

// A listener's buffers are forced past net.core.rmem_max/wmem_max where
// the kernel allows it; otherwise it caps them there and SetUDPListener
// still succeeds.
func TestSetUDPListenerBuffers(t *testing.T) {
	rmax, wmax := sysctlInt(t, rmemMax), sysctlInt(t, wmemMax)
	want := max(rmax, wmax) + 1<<16
	force := canForceBuffers(t)
	fd := udpSocket(t)
	if err := SetUDPListener(fd, want); err != nil {
		t.Fatalf("SetUDPListener: %v", err)
	}
	rcv, snd, err := SocketBuffers(fd)
	if err != nil {
		t.Fatal(err)
	}
	// The kernel reports twice what it granted.
	if force {
		if rcv/2 < want || snd/2 < want {
			t.Errorf("with CAP_NET_ADMIN: buffers %d/%d granted, want %d each (forced past the sysctl caps)", rcv/2, snd/2, want)
		}
	} else if rcv/2 != rmax || snd/2 != wmax {
		t.Errorf("without CAP_NET_ADMIN: buffers %d/%d granted, want the caps %d/%d", rcv/2, snd/2, rmax, wmax)
	}
}

// A flow's socket is never forced: a port may hold thousands of flows, and
// the admin's net.core.rmem_max/wmem_max stand for each, even when the
// launcher could override them.
func TestSetUDPForwardingKeepsCaps(t *testing.T) {
	rmax, wmax := sysctlInt(t, rmemMax), sysctlInt(t, wmemMax)
	want := max(rmax, wmax) + 1<<16
	t.Logf("CAP_NET_ADMIN (could force): %v", canForceBuffers(t))
	fd := udpSocket(t)
	if err := SetUDPForwarding(fd, want); err != nil {
		t.Fatalf("SetUDPForwarding: %v", err)
	}
	rcv, snd, err := SocketBuffers(fd)
	if err != nil {
		t.Fatal(err)
	}
	if rcv/2 != rmax || snd/2 != wmax {
		t.Errorf("flow socket: buffers %d/%d granted, want the caps %d/%d (never forced)", rcv/2, snd/2, rmax, wmax)
	}
}

const rmemMax, wmemMax = "rmem_max", "wmem_max"
