package seccomp

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/unroot/unroot/internal/testutil"
)

const helperEnv = "UNROOT_SECCOMP_TEST_HELPER"

// The main goroutine keeps the main thread to itself: Go never ends the
// main thread, so a filter installed from a locked goroutine that happened
// to run there would outlive that goroutine, and TestGone would wait
// forever for the POLLHUP that comes once no task holds the filter (it hung
// so under -race in CI).
func init() { runtime.LockOSThread() }

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "bind" {
		os.Exit(helperBind())
	}
	testutil.Main(m) // fails on leftover goroutines and descriptors
}

// helperBind binds 127.0.0.1:1 and prints the port its socket ended up on.
func helperBind() int {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		fmt.Println("socket:", err)
		return 1
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Port: 1, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		fmt.Println("bind:", err)
		return 1
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		fmt.Println("getsockname:", err)
		return 1
	}
	fmt.Printf("port=%d\n", sa.(*unix.SockaddrInet4).Port)
	return 0
}

// startTrapped starts the test binary as helper mode under a filter that
// traps bind, from a locked thread that then ends.
func startTrapped(t *testing.T, mode string, out *bytes.Buffer) (*exec.Cmd, *Listener) {
	t.Helper()
	arch, err := NativeArch()
	if err != nil {
		t.Skip(err)
	}
	type res struct {
		cmd *exec.Cmd
		fd  int
		err error
	}
	ch := make(chan res, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the filtered thread ends with us
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			ch <- res{err: err}
			return
		}
		prog := Program(arch, []Rule{{Nr: unix.SYS_BIND, LenArg: 2, Lens: []uint32{16, 28}, NonZeroArg: -1}})
		fd, err := Install(prog)
		if err != nil {
			ch <- res{err: err}
			return
		}
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), helperEnv+"="+mode)
		cmd.Stdout = out
		cmd.Stderr = out
		if err := cmd.Start(); err != nil {
			unix.Close(fd)
			ch <- res{err: err}
			return
		}
		ch <- res{cmd: cmd, fd: fd}
	}()
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	return r.cmd, NewListener(r.fd)
}

// TestReplace traps a real bind, reads its address from the target's
// memory, reaches its socket with pidfd_getfd and swaps in a socket of
// ours with ADDFD: the program sees our socket's port.
func TestReplace(t *testing.T) {
	var out bytes.Buffer
	cmd, l := startTrapped(t, "bind", &out)
	defer l.Close()
	n, err := l.Recv()
	if err != nil {
		t.Fatalf("recv: %v", err)
	}
	if n.Nr != unix.SYS_BIND || int(n.Pid) != cmd.Process.Pid {
		t.Fatalf("got call %d of pid %d, want bind of %d", n.Nr, n.Pid, cmd.Process.Pid)
	}
	sa := make([]byte, n.Args[2])
	if err := ReadMem(int(n.Pid), n.Args[1], sa); err != nil {
		t.Fatal(err)
	}
	if err := l.Valid(n.ID); err != nil {
		t.Fatalf("valid: %v", err)
	}
	if fam, port := binary.LittleEndian.Uint16(sa), binary.BigEndian.Uint16(sa[2:]); fam != unix.AF_INET || port != 1 {
		t.Fatalf("read family %d port %d, want %d, 1", fam, port, unix.AF_INET)
	}
	pidfd, err := unix.PidfdOpen(int(n.Pid), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(pidfd)
	theirs, err := unix.PidfdGetfd(pidfd, int(n.Args[0]), 0)
	if err != nil {
		t.Fatalf("pidfd_getfd: %v", err)
	}
	defer unix.Close(theirs)
	if dom, err := unix.GetsockoptInt(theirs, unix.SOL_SOCKET, unix.SO_DOMAIN); err != nil || dom != unix.AF_INET {
		t.Fatalf("their socket's domain: %d, %v", dom, err)
	}
	ours, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(ours)
	if err := unix.Bind(ours, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	ourSA, _ := unix.Getsockname(ours)
	if err := l.Replace(n.ID, ours, int(n.Args[0]), false); err != nil {
		t.Fatalf("addfd: %v", err)
	}
	if err := l.Return(n.ID, 0, 0); err != nil {
		t.Fatalf("send: %v", err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("helper: %v: %s", err, out.String())
	}
	want := fmt.Sprintf("port=%d", ourSA.(*unix.SockaddrInet4).Port)
	if got := strings.TrimSpace(out.String()); got != want {
		t.Fatalf("helper printed %q, want %q", got, want)
	}
}

// TestContinueAndErrno: Continue lets the bind run as asked; Return with an
// errno fails it.
func TestContinueAndErrno(t *testing.T) {
	for _, tc := range []struct {
		name string
		cont bool
		want string
	}{
		{"continue", true, ""},
		{"errno", false, "bind: address already in use"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			cmd, l := startTrapped(t, "bind", &out)
			defer l.Close()
			n, err := l.Recv()
			if err != nil {
				t.Fatal(err)
			}
			if tc.cont {
				err = l.Continue(n.ID)
			} else {
				err = l.Return(n.ID, 0, unix.EADDRINUSE)
			}
			if err != nil {
				t.Fatal(err)
			}
			cmd.Wait()
			got := strings.TrimSpace(out.String())
			if tc.cont {
				// Port 1 needs root; either way the call ran in the kernel.
				if got != "port=1" && got != "bind: permission denied" {
					t.Fatalf("helper printed %q, want the kernel's own bind", got)
				}
				return
			}
			if got != tc.want {
				t.Fatalf("helper printed %q, want %q", got, tc.want)
			}
		})
	}
}

// TestGone: a target killed while trapped makes Valid and answers fail
// with ErrGone, and the listener reports POLLHUP once no target is left.
func TestGone(t *testing.T) {
	var out bytes.Buffer
	cmd, l := startTrapped(t, "bind", &out)
	defer l.Close()
	n, err := l.Recv()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Process.Kill()
	cmd.Wait()
	if err := l.Valid(n.ID); err != ErrGone {
		t.Fatalf("valid after kill: %v, want ErrGone", err)
	}
	if err := l.Continue(n.ID); err != ErrGone {
		t.Fatalf("continue after kill: %v, want ErrGone", err)
	}
	stop, _ := unix.Eventfd(0, unix.EFD_CLOEXEC)
	defer unix.Close(stop)
	_, hup, err := l.Wait(stop)
	if err != nil || !hup {
		t.Fatalf("wait: hup %v, %v; want hup", hup, err)
	}
}

func TestProbe(t *testing.T) {
	if err := Probe(); err != nil {
		t.Fatalf("probe on a kernel that has everything: %v", err)
	}
	// The probe's filter went with its thread: a bind here is not trapped
	// (it would hang, with no supervisor).
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	done := make(chan error, 1)
	go func() { done <- unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}) }()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
