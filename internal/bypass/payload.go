package bypass

import (
	"encoding/binary"
	"errors"
	"math"
	"strings"

	"golang.org/x/sys/unix"
)

// The pure parts of the supervisor: what a program's sendto or sendmsg
// arguments say of its payload, checked as the kernel checks them before
// any of it is read; and what a warned fallback asks the user to do.

// maxDatagram bounds what a redirected send reads of the program's
// payload: a UDP datagram (or a GSO batch of them) is at most 64 KiB.
const maxDatagram = 1 << 16

// uioMaxIOV is UIO_MAXIOV, the most iovecs one sendmsg may name.
const uioMaxIOV = 1024

// iovec is a struct iovec of the target.
type iovec struct{ base, len uint64 }

// errControl: the supervisor does not send control messages (SCM_*,
// UDP_SEGMENT...) on the program's behalf.
var errControl = errors.New("the message carries control messages, which are not sent to a port bound through the bypass")

// checkMsghdr says whether a sendmsg's header can be sent by the
// supervisor: errno is what the kernel fails the call with (EMSGSIZE for
// more than UIO_MAXIOV iovecs), err that the supervisor does not send it.
func checkMsghdr(h msghdr) (unix.Errno, error) {
	if h.iovlen > uioMaxIOV {
		return unix.EMSGSIZE, nil
	}
	if h.controllen != 0 {
		return 0, errControl
	}
	return 0, nil
}

// decodeIovecs decodes the struct iovec array raw (16 bytes each, the
// 64-bit layout).
func decodeIovecs(raw []byte) []iovec {
	le := binary.LittleEndian
	iovs := make([]iovec, 0, len(raw)/16)
	for i := 0; i+16 <= len(raw); i += 16 {
		iovs = append(iovs, iovec{le.Uint64(raw[i:]), le.Uint64(raw[i+8:])})
	}
	return iovs
}

// sendtoIovec is sendto's buffer as an iovec: the kernel caps its length
// at INT_MAX rather than refusing it.
func sendtoIovec(buf, ln uint64) iovec {
	return iovec{buf, min(ln, math.MaxInt32)}
}

// payloadSize is the datagram's length. Like the kernel it fails with
// EINVAL when any iovec's length is negative as an ssize_t (over
// math.MaxInt64), and with EMSGSIZE once the lengths add up to more than a
// datagram holds; the running sum never overflows.
func payloadSize(iovs []iovec) (int, unix.Errno) {
	for _, v := range iovs {
		if v.len > math.MaxInt64 {
			return 0, unix.EINVAL
		}
	}
	var total uint64
	for _, v := range iovs {
		total += v.len // both at most 2^63-1: no overflow
		if total > maxDatagram {
			return 0, unix.EMSGSIZE
		}
	}
	return int(total), 0
}

// fallbackFix is what to do about a fallback (fallback's key and cause)
// that recurs until the user acts, "" where nothing is to be done (the
// program's own choice, such as control messages).
func fallbackFix(key string, err error) string {
	switch {
	case key == "socket" && errors.Is(err, unix.EMFILE):
		return "to fix, raise the open-file limit of unroot (ulimit -n before unroot run, LimitNOFILE= in its systemd unit)"
	case key == "socket" && errors.Is(err, unix.ENFILE):
		return "to fix, raise the host's open-file limit (sysctl fs.file-max) or close programs that hold many files"
	case key == "socket" && (errors.Is(err, unix.ENOBUFS) || errors.Is(err, unix.ENOMEM)):
		return "the host is short of memory: free some"
	case key == "addfd":
		return "this is a bug in unroot: please report it with this line and the kernel version (uname -r)"
	case (strings.HasPrefix(key, "sock-") || strings.HasPrefix(key, "read-") || key == "payload") && errors.Is(err, unix.EPERM):
		return "to fix, let unroot look into its command's descriptors and memory (kernel.yama.ptrace_scope 1 or less; a security module may forbid pidfd_getfd or process_vm_readv), or run without --bypass"
	}
	return ""
}
