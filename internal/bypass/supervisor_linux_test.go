package bypass

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/unroot/unroot/internal/seccomp"
	"github.com/unroot/unroot/internal/testutil"
)

const helperEnv = "UNROOT_BYPASS_TEST_HELPER"

// helper binds 0.0.0.0:80, listens, prints the address its socket reports,
// connects to 127.0.0.1:80 (its own port, as a program inside would) and
// prints what it read from the connection it accepted.
func helper(string) int {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		fmt.Println("socket:", err)
		return 1
	}
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	if err := unix.Bind(fd, &unix.SockaddrInet4{Port: 80}); err != nil {
		fmt.Println("bind:", err)
		return 1
	}
	if err := unix.Listen(fd, 8); err != nil {
		fmt.Println("listen:", err)
		return 1
	}
	sa, _ := unix.Getsockname(fd)
	fmt.Printf("bound=%v\n", fromSockaddr(sa))
	if v, _ := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR); v != 1 {
		fmt.Println("SO_REUSEADDR lost")
	}
	c, err := net.Dial("tcp4", "127.0.0.1:80")
	if err != nil {
		fmt.Println("dial:", err)
		return 1
	}
	c.Write([]byte("hi"))
	nfd, _, err := unix.Accept(fd)
	if err != nil {
		fmt.Println("accept:", err)
		return 1
	}
	b := make([]byte, 2)
	n, _ := unix.Read(nfd, b)
	fmt.Printf("read=%s\n", b[:n])
	return 0
}

type fakePorts struct {
	mu    sync.Mutex
	pubs  []Published
	calls []string
}

func (f *fakePorts) Published(context.Context) []Published {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Published(nil), f.pubs...)
}

func (f *fakePorts) StepAside(_ context.Context, id int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "aside "+strconv.Itoa(id))
	return nil
}

func (f *fakePorts) StepBack(_ context.Context, id int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "back "+strconv.Itoa(id))
	return nil
}

func (f *fakePorts) log() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.calls, ", ")
}

// TestSupervisor runs the supervisor against a real trapped program in
// this network namespace (standing for the namespace's own): its bind of a
// published port becomes a socket bound to the published host port, the
// relay is asked to step aside, its connect to 127.0.0.1:80 reaches that
// socket, and once the program is gone the relay is asked back.
func TestSupervisor(t *testing.T) {
	testutil.RequireRoot(t, "SIOCGSKNS (which socket belongs to which network namespace) needs CAP_NET_ADMIN")
	arch, err := seccomp.NativeArch()
	if err != nil {
		t.Skip(err)
	}
	// A free host port.
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hostPort := uint16(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	ports := &fakePorts{pubs: []Published{{ID: 7, Transport: "tcp", ParentIP: netip.MustParseAddr("127.0.0.1"), ParentPort: hostPort, ChildPort: 80}}}

	var out bytes.Buffer
	type started struct {
		cmd *exec.Cmd
		fd  int
		err error
	}
	ch := make(chan started, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the filtered thread ends with us
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			ch <- started{err: err}
			return
		}
		fd, err := seccomp.Install(seccomp.Program(arch, Rules()))
		if err != nil {
			ch <- started{err: err}
			return
		}
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), helperEnv+"=1")
		cmd.Stdout, cmd.Stderr = &out, &out
		err = cmd.Start()
		ch <- started{cmd: cmd, fd: fd, err: err}
	}()
	st := <-ch
	if st.err != nil {
		t.Fatal(st.err)
	}
	s, err := Start(Config{
		Listener: seccomp.NewListener(st.fd),
		NetNS:    nsInode(os.Getpid()),
		InitPID:  os.Getpid(),
		Policy:   Policy{},
		Ports:    ports,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	done := make(chan error, 1)
	go func() { done <- st.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("helper: %v: %s", err, out.String())
		}
	case <-time.After(20 * time.Second):
		st.cmd.Process.Kill()
		<-done
		t.Fatalf("helper hung: %s", out.String())
	}
	want := fmt.Sprintf("bound=127.0.0.1:%d\nread=hi\n", hostPort)
	if out.String() != want {
		t.Errorf("helper printed %q, want %q", out.String(), want)
	}
	// The relay comes back after two free checks, 2 s apart (later on a
	// loaded machine).
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(ports.log(), "back 7") && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if got := ports.log(); got != "aside 7, back 7" {
		t.Errorf("relay calls: %q, want \"aside 7, back 7\"", got)
	}
}
