package seccomp

import (
	"errors"
	"os"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestReadMemShort: memory that straddles a mapped and an unmapped page
// fails with EFAULT, as the kernel fails a call whose buffer does (the
// supervisor leaves such calls to the kernel rather than warning).
func TestReadMemShort(t *testing.T) {
	page := os.Getpagesize()
	mem, err := unix.Mmap(-1, 0, 2*page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(mem)
	base := uintptr(unsafe.Pointer(&mem[0]))
	// The second page goes (unix.Munmap takes whole mappings only); the
	// deferred Munmap of both pages unmaps what is left.
	if _, _, errno := unix.Syscall(unix.SYS_MUNMAP, base+uintptr(page), uintptr(page), 0); errno != 0 {
		t.Fatal(errno)
	}
	copy(mem[page-8:page], "straddle")
	b := make([]byte, 16)
	err = ReadMem(os.Getpid(), uint64(base)+uint64(page)-8, b)
	if !errors.Is(err, unix.EFAULT) {
		t.Errorf("ReadMem across the end of a mapping: %v, want EFAULT", err)
	}
	if err := ReadMem(os.Getpid(), uint64(base)+uint64(page)-8, b[:8]); err != nil || string(b[:8]) != "straddle" {
		t.Errorf("ReadMem of the mapped part: %q, %v", b[:8], err)
	}
	if err := ReadMem(os.Getpid(), uint64(base)+uint64(page), b); !errors.Is(err, unix.EFAULT) {
		t.Errorf("ReadMem of an unmapped page: %v, want EFAULT", err)
	}
}
