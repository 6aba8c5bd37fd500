package activation

import "syscall"

// fcntlGetfd reports whether fd is open (F_GETFD fails with EBADF if not).
func fcntlGetfd(fd int) (int, error) {
	r, _, errno := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_GETFD, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(r), nil
}
