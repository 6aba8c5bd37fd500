package bypass

import (
	"runtime"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestTakeSocketFromThread: a notification names the thread that made the
// call, which in a multi-threaded program (Go's runtime, a thread pool) is
// often not the thread-group leader. takeSocket must take the descriptor
// all the same: on Linux 6.9 and later pidfd_open of such a thread fails
// (ENOENT on 6.18, EINVAL before), and a static Go server's bind of a
// published port then stayed inside about one time in fifteen.
func TestTakeSocketFromThread(t *testing.T) {
	sock, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(sock)
	// Lock goroutines to threads until one is not the leader; the locks
	// are released when the test ends.
	tids := make(chan int)
	release := make(chan struct{})
	defer close(release)
	var tid int
	for tid = unix.Getpid(); tid == unix.Getpid(); {
		go func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			tids <- unix.Gettid()
			<-release
		}()
		tid = <-tids
	}
	for _, id := range []int{unix.Getpid(), tid} {
		fd, err := takeSocket(id, sock)
		if err != nil {
			t.Errorf("takeSocket(thread %d, fd %d): %v", id, sock, err)
			continue
		}
		var a, b unix.Stat_t
		unix.Fstat(fd, &a)
		unix.Fstat(sock, &b)
		if a.Ino != b.Ino {
			t.Errorf("takeSocket(thread %d) took inode %d, want %d", id, a.Ino, b.Ino)
		}
		unix.Close(fd)
	}
}

// TestDecodeMsghdr: the offsets decodeMsghdr reads are those of the
// kernel's struct msghdr, as golang.org/x/sys lays it out for this
// architecture.
func TestDecodeMsghdr(t *testing.T) {
	var m unix.Msghdr
	if unsafe.Sizeof(m) != msghdrSize {
		t.Fatalf("struct msghdr is %d bytes here, want %d", unsafe.Sizeof(m), msghdrSize)
	}
	var name [28]byte
	iov := make([]unix.Iovec, 3)
	ctl := make([]byte, 40)
	m.Name = &name[0]
	m.Namelen = 28
	m.Iov = &iov[0]
	m.SetIovlen(3)
	m.Control = &ctl[0]
	m.SetControllen(40)
	b := unsafe.Slice((*byte)(unsafe.Pointer(&m)), unsafe.Sizeof(m))
	h := decodeMsghdr(b)
	want := msghdr{
		name:       uint64(uintptr(unsafe.Pointer(&name[0]))),
		namelen:    28,
		iov:        uint64(uintptr(unsafe.Pointer(&iov[0]))),
		iovlen:     3,
		controllen: 40,
	}
	if h != want {
		t.Errorf("decodeMsghdr = %+v, want %+v", h, want)
	}
}
