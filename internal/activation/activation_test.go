package activation

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The test binary plays every part of the real chain, each a separate
// process: systemd-socket-activate → "launcher" (FromEnv, spawns the init
// in new user+pid namespaces with the sockets first in ExtraFiles) → "init"
// (Inherited, Wrap) → activation helper (Main) → "command", which checks
// what sd_listen_fds(3) would and answers on every socket.
const roleEnv = "_ACTIVATION_TEST_ROLE"

func TestMain(m *testing.M) {
	if Main() {
		return
	}
	switch os.Getenv(roleEnv) {
	case "launcher":
		os.Exit(launcher())
	case "init":
		os.Exit(initProc())
	case "command":
		os.Exit(command())
	}
	os.Exit(m.Run())
}

func launcher() int {
	set, err := FromEnv()
	if err != nil || set.Len() == 0 {
		fmt.Fprintln(os.Stderr, "launcher: no sockets:", err)
		return 2
	}
	// A stand-in for the ctl socketpair: it must land after the sockets and
	// never reach the command.
	ctl, _ := os.Open("/dev/null")
	cmd := exec.Command("/proc/self/exe")
	cmd.ExtraFiles = append(set.Files(), ctl)
	cmd.Env = append(set.ChildEnv(os.Environ()), roleEnv+"=init")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER | syscall.CLONE_NEWPID,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
		Pdeathsig:   syscall.SIGKILL}
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "launcher:", err)
		return 3
	}
	return 0
}

func initProc() int {
	if os.Getenv("LISTEN_FDS") != "" || os.Getenv("LISTEN_PID") != "" {
		fmt.Fprintln(os.Stderr, "init: sd_listen_fds variables leaked into the namespace init")
		return 4
	}
	set := Inherited()
	// The real init marks its ctl socket close-on-exec when it takes it.
	syscall.CloseOnExec(FirstFD + set.Len())
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), roleEnv+"=command")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := set.Wrap(cmd); err != nil {
		fmt.Fprintln(os.Stderr, "init:", err)
		return 5
	}
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "init:", err)
		return 6
	}
	return 0
}

func command() int {
	n, names, err := Parse(os.Getenv("LISTEN_PID"), os.Getenv("LISTEN_FDS"), os.Getenv("LISTEN_FDNAMES"), os.Getpid())
	if err != nil || n == 0 {
		fmt.Fprintf(os.Stderr, "command: LISTEN_PID=%s pid=%d LISTEN_FDS=%s: %v\n", os.Getenv("LISTEN_PID"), os.Getpid(), os.Getenv("LISTEN_FDS"), err)
		return 7
	}
	// The launcher's ctl stand-in is /dev/null; it must not follow the
	// sockets into the command. (The Go runtime of this command may itself
	// hold an fd there, e.g. a cgroup file for GOMAXPROCS.)
	extra := "closed"
	if p, _ := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", FirstFD+n)); p == "/dev/null" {
		extra = "leaked"
	}
	for i := range n {
		l, err := net.FileListener(os.NewFile(uintptr(FirstFD+i), "listen"))
		if err != nil {
			fmt.Fprintln(os.Stderr, "command:", err)
			return 8
		}
		c, err := l.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, "command:", err)
			return 9
		}
		fmt.Fprintf(c, "fd=%d pid=%d listen_pid=%s fds=%d names=%s next_fd=%s helper=%s\n",
			FirstFD+i, os.Getpid(), os.Getenv("LISTEN_PID"), n, strings.Join(names, ":"), extra, os.Getenv(helperEnv))
		c.Close()
	}
	return 0
}

func freePorts(t *testing.T, n int) []int {
	var ports []int
	var ls []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

func TestSystemdSocketActivate(t *testing.T) {
	if _, err := exec.LookPath("systemd-socket-activate"); err != nil {
		t.Fatalf("systemd-socket-activate: %v (Debian package systemd, in scripts/apt-packages.txt)", err)
	}
	for _, n := range []int{1, 2, 3} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			ports := freePorts(t, n)
			names := []string{"http", "https", "admin"}[:n]
			// systemd-socket-activate passes on only what -E names.
			args := []string{"--fdname=" + strings.Join(names, ":"), "-E", roleEnv + "=launcher"}
			for _, p := range ports {
				args = append(args, "-l", fmt.Sprintf("127.0.0.1:%d", p))
			}
			self, _ := os.Executable()
			args = append(args, "--", self)
			sa := exec.CommandContext(ctx, "systemd-socket-activate", args...)
			var stderr strings.Builder
			sa.Stderr = &stderr
			if err := sa.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() {
				sa.Process.Kill()
				sa.Wait()
			}()
			for i, p := range ports {
				var c net.Conn
				var err error
				for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
					if c, err = net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", p)); err == nil {
						break
					}
				}
				if err != nil {
					t.Fatalf("dial port %d: %v\n%s", p, err, stderr.String())
				}
				c.SetReadDeadline(time.Now().Add(10 * time.Second))
				line, err := bufio.NewReader(c).ReadString('\n')
				c.Close()
				if err != nil {
					t.Fatalf("socket %d: no answer: %v\n%s", i, err, stderr.String())
				}
				f := map[string]string{}
				for _, kv := range strings.Fields(line) {
					k, v, _ := strings.Cut(kv, "=")
					f[k] = v
				}
				want := map[string]string{"fd": strconv.Itoa(3 + i), "pid": f["listen_pid"], "listen_pid": f["pid"],
					"fds": strconv.Itoa(n), "names": strings.Join(names, ":"), "next_fd": "closed", "helper": ""}
				if !reflect.DeepEqual(f, want) || f["pid"] == "" {
					t.Errorf("socket %d answered %q, want %v", i, line, want)
				}
				// In its own pid namespace the command is a low pid: proof
				// LISTEN_PID was rewritten after fork, not copied from unroot.
				if pid, _ := strconv.Atoi(f["pid"]); pid > 10 {
					t.Errorf("command pid %d: not in the new pid namespace", pid)
				}
			}
			if err := sa.Wait(); err != nil {
				t.Errorf("chain exited with %v\n%s", err, stderr.String())
			}
		})
	}
}

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		pid, fds, names string
		self            int
		n               int
		wantNames       []string
		ok              bool
	}{
		{"42", "2", "a:b", 42, 2, []string{"a", "b"}, true},
		{"42", "1", "", 42, 1, nil, true},
		{"43", "2", "a:b", 42, 0, nil, true},
		{"", "2", "", 42, 0, nil, true},
		{"42", "", "", 42, 0, nil, true},
		{"42", "2", "a", 42, 2, nil, true},
		{"x", "2", "", 42, 0, nil, false},
		{"42", "-1", "", 42, 0, nil, false},
		{"42", "many", "", 42, 0, nil, false},
		{"42", "5000", "", 42, 0, nil, false},
	} {
		n, names, err := Parse(tc.pid, tc.fds, tc.names, tc.self)
		if (err == nil) != tc.ok || n != tc.n || !reflect.DeepEqual(names, tc.wantNames) {
			t.Errorf("Parse(%q, %q, %q, %d) = %d %v %v; want %d %v ok=%v", tc.pid, tc.fds, tc.names, tc.self, n, names, err, tc.n, tc.wantNames, tc.ok)
		}
	}
}

func TestNilSet(t *testing.T) {
	var s *Set
	cmd := exec.Command("true")
	if err := s.Wrap(cmd); err != nil || cmd.Path != exec.Command("true").Path || s.Len() != 0 || s.Files() != nil {
		t.Errorf("nil Set changed the command or reported sockets")
	}
	env := s.ChildEnv([]string{"LISTEN_PID=1", "LISTEN_FDS=2", "A=b"})
	if !reflect.DeepEqual(env, []string{"A=b"}) {
		t.Errorf("ChildEnv = %v, want the listen variables removed", env)
	}
}

func FuzzParse(f *testing.F) {
	f.Add("42", "3", "a:b:c", 42)
	f.Add("1", "0", "", 1)
	f.Fuzz(func(t *testing.T, pid, fds, names string, self int) {
		n, ns, err := Parse(pid, fds, names, self)
		if err != nil && (n != 0 || ns != nil) {
			t.Fatalf("values with error")
		}
		if n < 0 || n > 1024 || (ns != nil && len(ns) != n) {
			t.Fatalf("n=%d names=%v", n, ns)
		}
	})
}
