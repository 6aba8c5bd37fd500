package bypass

import (
	"os"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// A notification names the thread that made the call; in a program with
// threads (any Go program) that is seldom the thread-group leader, and
// takeSocket must still reach the process's descriptor. Linux 6.18 answers
// pidfd_open of such a thread with ENOENT, older kernels with EINVAL.
func TestTakeSocketOfThread(t *testing.T) {
	// Two threads held at once: at most one of them is the leader.
	tids, release := make(chan int, 2), make(chan struct{})
	for range 2 {
		go func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			tids <- unix.Gettid()
			<-release
		}()
	}
	defer close(release)
	tid := <-tids
	if tid == os.Getpid() {
		tid = <-tids
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	dup, err := takeSocket(tid, fd)
	if err != nil {
		t.Fatalf("takeSocket of thread %d (process %d): %v", tid, os.Getpid(), err)
	}
	defer unix.Close(dup)
	if si, ok := inspect(dup); !ok || si.family != unix.AF_INET || si.typ != unix.SOCK_STREAM {
		t.Errorf("the duplicate is %+v, %v; want the TCP socket", si, ok)
	}
}
