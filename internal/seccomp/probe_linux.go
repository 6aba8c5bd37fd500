package seccomp

import (
	"errors"
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Probe checks, without changing this process, that a filter with a
// user-notification listener can be installed and that the kernel has
// SECCOMP_IOCTL_NOTIF_ADDFD and pidfd_getfd. It installs a filter that
// traps nothing on a locked thread that then ends (Go ends a thread whose
// goroutine exits locked), so the filter goes with it.
func Probe() error {
	arch, err := NativeArch()
	if err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with us
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			errc <- fmt.Errorf("set no_new_privs on a probe thread: %w", err)
			return
		}
		// A bind whose address length is never used: nothing is trapped.
		prog := Program(arch, []Rule{{Nr: unix.SYS_BIND, LenArg: 2, Lens: []uint32{0xffffffff}, NonZeroArg: -1}})
		fd, err := Install(prog)
		if err != nil {
			errc <- err
			return
		}
		defer unix.Close(fd)
		errc <- CheckAddfd(fd)
	}()
	if err := <-errc; err != nil {
		return err
	}
	pidfd, err := unix.PidfdOpen(unix.Getpid(), 0)
	if err != nil {
		return fmt.Errorf("pidfd_open: %w (%w: Linux 5.6 or later is needed)", err, ErrNotSupported)
	}
	defer unix.Close(pidfd)
	fd, err := unix.PidfdGetfd(pidfd, pidfd, 0) // a descriptor that surely exists
	if err != nil {
		if errors.Is(err, unix.ENOSYS) {
			return fmt.Errorf("pidfd_getfd: %w (%w: Linux 5.6 or later is needed)", err, ErrNotSupported)
		}
		return fmt.Errorf("pidfd_getfd: %w (a security module forbids it; allow ptrace-class access to your own processes)", err)
	}
	unix.Close(fd)
	return nil
}

// CheckAddfd asks the kernel for SECCOMP_IOCTL_NOTIF_ADDFD on listener fd
// with a notification that does not exist: ENOENT where the kernel knows
// the request (5.9+), EINVAL or ENOTTY where not.
func CheckAddfd(fd int) error {
	a := notifAddfd{ID: ^uint64(0), Srcfd: uint32(fd), Flags: unix.SECCOMP_ADDFD_FLAG_SETFD}
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SECCOMP_IOCTL_NOTIF_ADDFD, uintptr(unsafe.Pointer(&a)))
	if errno != unix.ENOENT {
		return fmt.Errorf("SECCOMP_IOCTL_NOTIF_ADDFD: %w (%w: Linux 5.9 or later is needed; run without --bypass)", errno, ErrNotSupported)
	}
	return nil
}
