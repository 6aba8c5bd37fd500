// Command eacces runs a program as another user under a seccomp filter that
// makes creating a user namespace fail with EACCES — what Ubuntu's AppArmor
// restriction (kernel.apparmor_restrict_unprivileged_userns=1) does — on a
// kernel without AppArmor. Everything else runs normally, setuid newuidmap
// included (no no_new_privs: the filter is installed by root).
//
//	eacces UID GID PROGRAM [ARG...]
package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"syscall"
	"unsafe"
)

type sockFilter struct {
	code uint16
	jt   uint8
	jf   uint8
	k    uint32
}

type sockFprog struct {
	len    uint16
	filter *sockFilter
}

const (
	ldAbs   = 0x20 // BPF_LD|BPF_W|BPF_ABS
	jeq     = 0x15 // BPF_JMP|BPF_JEQ|BPF_K
	jset    = 0x45 // BPF_JMP|BPF_JSET|BPF_K
	ret     = 0x06 // BPF_RET|BPF_K
	allow   = 0x7fff0000
	errno   = 0x00050000
	archX86 = 0xc000003e

	sysClone   = 56
	sysUnshare = 272
	sysClone3  = 435
	sysSeccomp = 317
)

func main() {
	if len(os.Args) < 4 || runtime.GOARCH != "amd64" {
		fmt.Fprintln(os.Stderr, "usage: eacces UID GID PROGRAM [ARG...] (amd64 only)")
		os.Exit(2)
	}
	uid, _ := strconv.Atoi(os.Args[1])
	gid, _ := strconv.Atoi(os.Args[2])
	prog := []sockFilter{
		{ldAbs, 0, 0, 4}, // arch
		{jeq, 0, 7, archX86},
		{ldAbs, 0, 0, 0}, // syscall number
		{jeq, 3, 0, sysClone},
		{jeq, 2, 0, sysUnshare},
		// clone3 passes flags by pointer, out of a filter's reach: say it
		// doesn't exist so callers fall back to clone.
		{jeq, 5, 0, sysClone3},
		{ret, 0, 0, allow},
		{ldAbs, 0, 0, 16}, // args[0], low word: the clone/unshare flags
		{jset, 1, 0, syscall.CLONE_NEWUSER},
		{ret, 0, 0, allow},
		{ret, 0, 0, errno | uint32(syscall.EACCES)},
		{ret, 0, 0, errno | uint32(syscall.ENOSYS)},
	}
	fp := sockFprog{len: uint16(len(prog)), filter: &prog[0]}
	const setModeFilter, flagTsync = 1, 1
	if _, _, e := syscall.RawSyscall(sysSeccomp, setModeFilter, flagTsync, uintptr(unsafe.Pointer(&fp))); e != 0 {
		fmt.Fprintln(os.Stderr, "eacces: seccomp:", e)
		os.Exit(2)
	}
	if err := syscall.Setgroups(nil); err != nil {
		fmt.Fprintln(os.Stderr, "eacces: setgroups:", err)
		os.Exit(2)
	}
	if err := syscall.Setgid(gid); err != nil {
		fmt.Fprintln(os.Stderr, "eacces: setgid:", err)
		os.Exit(2)
	}
	if err := syscall.Setuid(uid); err != nil {
		fmt.Fprintln(os.Stderr, "eacces: setuid:", err)
		os.Exit(2)
	}
	err := syscall.Exec(os.Args[3], os.Args[3:], os.Environ())
	fmt.Fprintln(os.Stderr, "eacces: exec:", err)
	os.Exit(2)
}
