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

// With CAP_NET_ADMIN (root in the tests) the buffers are forced past
// net.core.rmem_max/wmem_max; without it the kernel caps them there and
// SetUDPForwarding still succeeds.
func TestSetUDPForwardingBuffers(t *testing.T) {
	sysctl := func(name string) int {
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
	want := max(sysctl(rmemMax), sysctl(wmemMax)) + 1<<16
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := SetUDPForwarding(fd, want); err != nil {
		t.Fatalf("SetUDPForwarding: %v", err)
	}
	rcv, snd, err := SocketBuffers(fd)
	if err != nil {
		t.Fatal(err)
	}
	// The kernel reports twice what it granted.
	if os.Geteuid() == 0 {
		if rcv/2 < want || snd/2 < want {
			t.Errorf("as root: buffers %d/%d granted, want %d each (forced past the sysctl caps)", rcv/2, snd/2, want)
		}
	} else if rcv/2 != sysctl(rmemMax) || snd/2 != sysctl(wmemMax) {
		t.Errorf("unprivileged: buffers %d/%d granted, want the caps %d/%d", rcv/2, snd/2, sysctl(rmemMax), sysctl(wmemMax))
	}
}

const rmemMax, wmemMax = "rmem_max", "wmem_max"
