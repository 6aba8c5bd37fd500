package seccomp

import (
	"errors"
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"
)

// ErrNotSupported is wrapped by errors for a platform or kernel that lacks
// what the filter needs.
var ErrNotSupported = errors.New("seccomp user notification is not supported")

// Rule traps one system call. Calls of other numbers are allowed.
type Rule struct {
	Nr uint32
	// LenArg, when >= 0, is the index of a socklen_t argument: the call is
	// trapped only when its value is one of Lens (lets bind and connect of
	// AF_UNIX and AF_NETLINK sockets run untrapped).
	LenArg int
	Lens   []uint32
	// NonZeroArg, when >= 0, is the index of a pointer argument that must
	// be non-NULL for the call to be trapped (sendto with an address).
	NonZeroArg int
}

// Arch is the seccomp audit architecture of this build and whether the
// arguments are little-endian (the filter compares their low 32 bits).
type Arch struct {
	Audit uint32
	// X32 is set on x86-64, where system call numbers with bit 30 set
	// belong to the x32 ABI and are let through.
	X32 bool
}

// NativeArch is the architecture this binary runs as, or an error wrapping
// ErrNotSupported.
func NativeArch() (Arch, error) {
	switch runtime.GOARCH {
	case "amd64":
		return Arch{Audit: unix.AUDIT_ARCH_X86_64, X32: true}, nil
	case "arm64":
		return Arch{Audit: unix.AUDIT_ARCH_AARCH64}, nil
	}
	return Arch{}, fmt.Errorf("%w on %s: unroot's filter is built for amd64 and arm64", ErrNotSupported, runtime.GOARCH)
}

// Offsets in struct seccomp_data.
const (
	offNr   = 0
	offArch = 4
	offArgs = 16
)

const x32Bit = 0x40000000

// Program returns the filter: calls that match a rule return
// SECCOMP_RET_USER_NOTIF, every other call (and every call of a foreign
// architecture) SECCOMP_RET_ALLOW.
func Program(a Arch, rules []Rule) []unix.SockFilter {
	var p []unix.SockFilter
	ld := func(off uint32) { p = append(p, stmt(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, off)) }
	// Jumps are written with symbolic targets and resolved at the end.
	type fix struct {
		at     int
		jt, jf int // label ids; -1 = next instruction
	}
	var fixes []fix
	labels := map[int]int{}
	const (
		lAllow = iota
		lNotify
		lNextBase // + rule index: start of the next rule
	)
	jump := func(op uint16, k uint32, jt, jf int) {
		fixes = append(fixes, fix{at: len(p), jt: jt, jf: jf})
		p = append(p, unix.SockFilter{Code: op, K: k})
	}
	ld(offArch)
	jump(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, a.Audit, -1, lAllow)
	ld(offNr)
	if a.X32 {
		jump(unix.BPF_JMP|unix.BPF_JGE|unix.BPF_K, x32Bit, lAllow, -1)
	}
	for i, r := range rules {
		next := lNextBase + i
		jump(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, r.Nr, -1, next)
		if r.NonZeroArg >= 0 {
			// A pointer is non-NULL when either half is.
			off := uint32(offArgs + 8*r.NonZeroArg)
			ld(off)
			jump(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, 0, -1, -1) // patched below
			lo := len(fixes) - 1
			ld(off + 4)
			jump(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, 0, lAllow, -1)
			// lo's false branch (low half non-zero) skips the high-half test.
			fixes[lo].jf = -2 - len(p) // absolute target: the instruction after the high test
		}
		if r.LenArg >= 0 {
			ld(uint32(offArgs + 8*r.LenArg))
			for _, n := range r.Lens {
				jump(unix.BPF_JMP|unix.BPF_JEQ|unix.BPF_K, n, lNotify, -1)
			}
			p = append(p, stmt(unix.BPF_RET|unix.BPF_K, unix.SECCOMP_RET_ALLOW))
		} else {
			p = append(p, stmt(unix.BPF_RET|unix.BPF_K, unix.SECCOMP_RET_USER_NOTIF))
		}
		labels[next] = len(p)
		// The next rule compares the number again: reload it (a rule's
		// argument tests replaced the accumulator).
		if i < len(rules)-1 {
			ld(offNr)
		}
	}
	labels[lAllow] = len(p)
	p = append(p, stmt(unix.BPF_RET|unix.BPF_K, unix.SECCOMP_RET_ALLOW))
	labels[lNotify] = len(p)
	p = append(p, stmt(unix.BPF_RET|unix.BPF_K, unix.SECCOMP_RET_USER_NOTIF))
	target := func(at, l int) uint8 {
		var to int
		switch {
		case l == -1:
			to = at + 1
		case l <= -2:
			to = -2 - l
		default:
			to = labels[l]
		}
		d := to - at - 1
		if d < 0 || d > 255 {
			panic(fmt.Sprintf("seccomp: jump of %d at %d", d, at))
		}
		return uint8(d)
	}
	for _, f := range fixes {
		p[f.at].Jt = target(f.at, f.jt)
		p[f.at].Jf = target(f.at, f.jf)
	}
	return p
}

func stmt(code uint16, k uint32) unix.SockFilter { return unix.SockFilter{Code: code, K: k} }
