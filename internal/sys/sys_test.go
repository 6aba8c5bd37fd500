package sys

import (
	"os/exec"
	"testing"

	"golang.org/x/sys/unix"
)

func TestNewSocketOptions(t *testing.T) {
	for _, tc := range []struct {
		sotype  int
		nodelay int
	}{{SOCK_STREAM, 1}, {SOCK_DGRAM, -1}} {
		f, err := NewSocket(AF_INET, tc.sotype)
		if err != nil {
			t.Fatal(err)
		}
		fd := int(f.Fd())
		if fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0); err != nil || fl&unix.O_NONBLOCK == 0 {
			t.Errorf("type %d: not non-blocking (flags %#x, %v)", tc.sotype, fl, err)
		}
		if tc.nodelay >= 0 {
			if v, err := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY); err != nil || v != tc.nodelay {
				t.Errorf("type %d: TCP_NODELAY = %d, %v; want %d", tc.sotype, v, err, tc.nodelay)
			}
		}
		f.Close()
	}
}

func TestHasChildren(t *testing.T) {
	cmd := exec.Command("sleep", "10")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if !HasChildren() {
		t.Error("HasChildren = false with a running child")
	}
	cmd.Process.Kill()
	cmd.Wait()
	// No other test in this package starts processes.
	if HasChildren() {
		t.Error("HasChildren = true after the only child was reaped")
	}
}
