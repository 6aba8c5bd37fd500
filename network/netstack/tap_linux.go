package netstack

import (
	"syscall"
	"unsafe"
)

// Thin syscall wrappers for the tap fd. They use the standard library's
// syscall package so this driver does not import x/sys/unix itself.

// ifreq is struct ifreq: a 16-byte name, then a union whose first field
// is the flags we read.
type ifreq struct {
	name  [16]byte
	flags uint16
	_     [22]byte
}

// tapHasVnetHdr reports whether fd was opened with IFF_VNET_HDR.
func tapHasVnetHdr(fd int) (bool, error) {
	var r ifreq
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), syscall.TUNGETIFF, uintptr(unsafe.Pointer(&r))); errno != 0 {
		return false, errno
	}
	return r.flags&syscall.IFF_VNET_HDR != 0, nil
}

func tapSetOffload(fd int, flags uintptr) error {
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), syscall.TUNSETOFFLOAD, flags); errno != 0 {
		return errno
	}
	return nil
}

func setNonblock(fd int) error { return syscall.SetNonblock(fd, true) }

func closeFD(fd int) { syscall.Close(fd) }
