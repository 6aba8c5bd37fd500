package bypass

import (
	"runtime"
	"testing"

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
