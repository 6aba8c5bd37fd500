package seccomp

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Install sets no filter-wide flags but NEW_LISTENER (and
// WAIT_KILLABLE_RECV where the kernel has it) and puts prog on the calling
// thread. The caller must hold CAP_SYS_ADMIN in its user namespace or have
// set no_new_privs, and must keep the thread locked for good. It returns
// the listener's descriptor (close-on-exec).
func Install(prog []unix.SockFilter) (int, error) {
	if len(prog) == 0 || len(prog) > 4096 {
		return -1, fmt.Errorf("install seccomp filter: %d instructions", len(prog))
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	flags := uintptr(unix.SECCOMP_FILTER_FLAG_NEW_LISTENER | unix.SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV)
	fd, _, errno := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, flags, uintptr(unsafe.Pointer(&fprog)))
	if errno == unix.EINVAL {
		// Before 5.19: no WAIT_KILLABLE_RECV.
		flags = unix.SECCOMP_FILTER_FLAG_NEW_LISTENER
		fd, _, errno = unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, flags, uintptr(unsafe.Pointer(&fprog)))
	}
	runtime.KeepAlive(prog)
	if errno != 0 {
		return -1, installError(errno)
	}
	return int(fd), nil
}

func installError(errno unix.Errno) error {
	switch errno {
	case unix.EINVAL, unix.ENOSYS:
		return fmt.Errorf("install seccomp filter with a user-notification listener: %w (%w: Linux 5.9 or later built with CONFIG_SECCOMP_FILTER is needed; run without --bypass)", errno, ErrNotSupported)
	case unix.EACCES, unix.EPERM:
		return fmt.Errorf("install seccomp filter with a user-notification listener: %w (a security module or an outer seccomp policy forbids it; allow seccomp(2) for unroot or run without --bypass)", errno)
	case unix.EBUSY:
		return fmt.Errorf("install seccomp filter with a user-notification listener: %w (another filter with a listener is already installed on this process: nested --bypass is not possible; run the inner one without --bypass)", errno)
	}
	return fmt.Errorf("install seccomp filter with a user-notification listener: %w", errno)
}

// Notif is one trapped system call (struct seccomp_notif).
type Notif struct {
	ID    uint64
	Pid   uint32
	Flags uint32
	Nr    int32
	Arch  uint32
	IP    uint64
	Args  [6]uint64
}

type notifResp struct {
	ID    uint64
	Val   int64
	Error int32
	Flags uint32
}

type notifAddfd struct {
	ID         uint64
	Flags      uint32
	Srcfd      uint32
	Newfd      uint32
	NewfdFlags uint32
}

// Listener is the supervisor's end of a filter. Its methods are safe to
// call from any goroutine; Recv blocks its OS thread.
type Listener struct {
	fd     int
	closed sync.Once
}

// NewListener wraps a listener descriptor (from Install, possibly passed
// over a unix socket). The Listener owns it.
func NewListener(fd int) *Listener { return &Listener{fd: fd} }

// Fd is the descriptor, to poll it.
func (l *Listener) Fd() int { return l.fd }

// Close closes the descriptor; later calls do nothing (the number may
// name another descriptor by then). Targets still trapped fail their call
// with ENOSYS; later trapped calls do too.
func (l *Listener) Close() error {
	var err error = unix.EBADF
	l.closed.Do(func() { err = unix.Close(l.fd) })
	return err
}

// SyncWakeUp asks the kernel (Linux 6.6 and later) to hand the CPU
// straight from a trapped thread to the supervisor and back, instead of
// waking each on whatever CPU is free: a notification that is answered at
// once (a sendmsg without an address) then costs about a context switch
// each way. Older kernels refuse it with EINVAL, which is no error here.
func (l *Listener) SyncWakeUp() error {
	var flags uint64 = unix.SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP
	err := l.ioctl(unix.SECCOMP_IOCTL_NOTIF_SET_FLAGS, unsafe.Pointer(&flags))
	if err == unix.EINVAL {
		return nil
	}
	if err != nil {
		return fmt.Errorf("seccomp listener: synchronous wake-up: %w", err)
	}
	return nil
}

// ErrGone means the target of a notification is no longer waiting for the
// answer (it died, or a signal interrupted its call).
var ErrGone = errors.New("the trapped call is gone")

func (l *Listener) ioctl(req uint, arg unsafe.Pointer) error {
	for {
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(l.fd), uintptr(req), uintptr(arg))
		switch errno {
		case 0:
			return nil
		case unix.EINTR:
			continue
		case unix.ENOENT:
			return ErrGone
		}
		return errno
	}
}

// Recv waits for the next notification. ErrGone means one came and went
// before it could be read: call again.
func (l *Listener) Recv() (Notif, error) {
	var n Notif // must be zeroed
	err := l.ioctl(unix.SECCOMP_IOCTL_NOTIF_RECV, unsafe.Pointer(&n))
	return n, err
}

// Valid reports whether notification id still waits for its answer: call
// it after reading the target's memory or descriptors, which may have
// belonged to another process by then.
func (l *Listener) Valid(id uint64) error {
	return l.ioctl(unix.SECCOMP_IOCTL_NOTIF_ID_VALID, unsafe.Pointer(&id))
}

// Return answers id: the call returns val, or fails with errno when errno
// is not 0.
func (l *Listener) Return(id uint64, val int64, errno unix.Errno) error {
	r := notifResp{ID: id, Val: val, Error: -int32(errno)}
	return l.ioctl(unix.SECCOMP_IOCTL_NOTIF_SEND, unsafe.Pointer(&r))
}

// Continue lets the kernel run the call as if it had not been trapped,
// with the target's arguments as they are now.
func (l *Listener) Continue(id uint64) error {
	r := notifResp{ID: id, Flags: unix.SECCOMP_USER_NOTIF_FLAG_CONTINUE}
	return l.ioctl(unix.SECCOMP_IOCTL_NOTIF_SEND, unsafe.Pointer(&r))
}

// Replace installs src in the target of id as descriptor number target,
// closing what that number named there, with close-on-exec as given.
func (l *Listener) Replace(id uint64, src, target int, cloexec bool) error {
	a := notifAddfd{ID: id, Flags: unix.SECCOMP_ADDFD_FLAG_SETFD, Srcfd: uint32(src), Newfd: uint32(target)}
	if cloexec {
		a.NewfdFlags = unix.O_CLOEXEC
	}
	return l.ioctl(unix.SECCOMP_IOCTL_NOTIF_ADDFD, unsafe.Pointer(&a))
}

// ReadMem copies len(b) bytes at addr in process pid. The caller checks
// Valid afterwards. An error that wraps unix.EFAULT means the range is not
// all mapped (a short read counts too).
func ReadMem(pid int, addr uint64, b []byte) error {
	if len(b) == 0 {
		return nil
	}
	local := []unix.Iovec{{Base: &b[0], Len: uint64(len(b))}}
	remote := []unix.RemoteIovec{{Base: uintptr(addr), Len: len(b)}}
	n, err := unix.ProcessVMReadv(pid, local, remote, 0)
	if err != nil {
		return fmt.Errorf("read memory of process %d: %w", pid, err)
	}
	if n != len(b) {
		// The range runs into memory that is not mapped: the kernel fails
		// a call whose buffer does so with EFAULT.
		return fmt.Errorf("read memory of process %d: %d of %d bytes: %w", pid, n, len(b), unix.EFAULT)
	}
	return nil
}

// Wait polls the listener and stop (an eventfd or pipe) until one is
// readable. It reports whether the listener is, and whether every target
// is gone (POLLHUP).
func (l *Listener) Wait(stop int) (ready, hup bool, err error) {
	fds := []unix.PollFd{{Fd: int32(l.fd), Events: unix.POLLIN}, {Fd: int32(stop), Events: unix.POLLIN}}
	for {
		_, err := unix.Poll(fds, -1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return false, false, fmt.Errorf("poll seccomp listener: %w", err)
		}
		if fds[1].Revents != 0 {
			return false, false, nil
		}
		return fds[0].Revents&unix.POLLIN != 0, fds[0].Revents&(unix.POLLHUP|unix.POLLERR) != 0, nil
	}
}
