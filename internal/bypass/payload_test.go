package bypass

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestPayloadSize(t *testing.T) {
	for _, tc := range []struct {
		name  string
		iovs  []iovec
		want  int
		errno unix.Errno
	}{
		{"none", nil, 0, 0},
		{"one", []iovec{{0x1000, 5}}, 5, 0},
		{"multi-iov", []iovec{{0x1000, 3}, {0x2000, 0}, {0x3000, 7}}, 10, 0},
		{"exactly a datagram", []iovec{{0x1000, maxDatagram - 1}, {0x2000, 1}}, maxDatagram, 0},
		{"over a datagram", []iovec{{0x1000, maxDatagram}, {0x2000, 1}}, 0, unix.EMSGSIZE},
		// 2^64-1 + 2 wraps to 1 in a plain sum.
		{"overflow", []iovec{{0x1000, math.MaxUint64}, {0x2000, 2}}, 0, unix.EINVAL},
		{"negative as ssize_t, last", []iovec{{0x1000, maxDatagram + 1}, {0x2000, 1 << 63}}, 0, unix.EINVAL},
		{"huge but not negative", []iovec{{0x1000, math.MaxInt64}, {0x2000, math.MaxInt64}}, 0, unix.EMSGSIZE},
		{"sendto INT_MAX cap", []iovec{sendtoIovec(0x1000, math.MaxUint64)}, 0, unix.EMSGSIZE},
		{"sendto small", []iovec{sendtoIovec(0x1000, 9)}, 9, 0},
	} {
		got, errno := payloadSize(tc.iovs)
		if got != tc.want || errno != tc.errno {
			t.Errorf("%s: payloadSize = %d, %v; want %d, %v", tc.name, got, errno, tc.want, tc.errno)
		}
	}
}

func TestCheckMsghdr(t *testing.T) {
	for _, tc := range []struct {
		name    string
		h       msghdr
		errno   unix.Errno
		control bool
	}{
		{"plain", msghdr{iovlen: 3}, 0, false},
		{"UIO_MAXIOV", msghdr{iovlen: 1024}, 0, false},
		{"iovlen > 1024", msghdr{iovlen: 1025}, unix.EMSGSIZE, false},
		{"iovlen huge", msghdr{iovlen: math.MaxUint64}, unix.EMSGSIZE, false},
		{"controllen != 0", msghdr{iovlen: 1, controllen: 24}, 0, true},
	} {
		errno, err := checkMsghdr(tc.h)
		if errno != tc.errno || errors.Is(err, errControl) != tc.control || (err != nil && !tc.control) {
			t.Errorf("%s: checkMsghdr = %v, %v; want errno %v, control messages refused %v", tc.name, errno, err, tc.errno, tc.control)
		}
	}
}

func TestDecodeIovecs(t *testing.T) {
	raw := make([]byte, 48)
	le := binary.LittleEndian
	for i, v := range []iovec{{0x1000, 3}, {0x2000, math.MaxUint64}, {0, 0}} {
		le.PutUint64(raw[16*i:], v.base)
		le.PutUint64(raw[16*i+8:], v.len)
	}
	got := decodeIovecs(raw)
	want := []iovec{{0x1000, 3}, {0x2000, math.MaxUint64}, {0, 0}}
	if len(got) != len(want) {
		t.Fatalf("decodeIovecs = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("decodeIovecs[%d] = %v, want %v", i, got[i], want[i])
		}
	}
	if n, errno := payloadSize(got); errno != unix.EINVAL {
		t.Errorf("payloadSize of decoded overflow = %d, %v; want EINVAL", n, errno)
	}
}

// FuzzPayloadSize: any iovec array the program passes yields a size within
// a datagram or an errno, never a panic or a size over maxDatagram.
func FuzzPayloadSize(f *testing.F) {
	f.Add(make([]byte, 32))
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, raw []byte) {
		iovs := decodeIovecs(raw)
		n, errno := payloadSize(iovs)
		if errno == 0 {
			var sum uint64
			for _, v := range iovs {
				sum += v.len
			}
			if n < 0 || n > maxDatagram || uint64(n) != sum {
				t.Fatalf("payloadSize = %d for %v", n, iovs)
			}
			_ = make([]byte, n)
		}
	})
}

func TestFallbackFix(t *testing.T) {
	wrap := func(e error) error { return fmt.Errorf("create host socket: %w", e) }
	for _, tc := range []struct {
		key  string
		err  error
		want string // in the fix; "" for none
	}{
		{"socket", wrap(unix.EMFILE), "raise the open-file limit"},
		{"socket", wrap(unix.ENFILE), "fs.file-max"},
		{"socket", wrap(unix.ENOMEM), "short of memory"},
		{"socket", wrap(unix.EAFNOSUPPORT), ""},
		{"addfd", fmt.Errorf("swap in the host socket: %w", unix.EBADF), "bug in unroot"},
		{"sock-connect", fmt.Errorf("pidfd_getfd 3 of thread 7: %w", unix.EPERM), "ptrace_scope"},
		{"read-sendmsg", fmt.Errorf("read memory of process 7: %w", unix.EPERM), "ptrace_scope"},
		{"payload", errControl, ""},
	} {
		got := fallbackFix(tc.key, tc.err)
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("fallbackFix(%q, %v) = %q, want one with %q", tc.key, tc.err, got, tc.want)
		}
	}
}
