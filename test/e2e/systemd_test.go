package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// sdFake is a unix datagram socket standing in for systemd's NOTIFY_SOCKET.
// Like systemd it takes each sender's pid from the kernel (SO_PASSCRED), so
// a message relayed by unroot and one sent from inside are told apart.
type sdFake struct {
	conn *net.UnixConn
	path string
}

func sdListen(t *testing.T) *sdFake {
	t.Helper()
	path := filepath.Join(TempDir(t), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := os.Chmod(path, 0o777); err != nil {
		t.Fatal(err)
	}
	raw, _ := c.SyscallConn()
	raw.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_PASSCRED, 1) })
	return &sdFake{conn: c, path: path}
}

type sdMsg struct {
	text string
	pid  int
}

// recv waits for the next notification.
func (f *sdFake) recv(t *testing.T, timeout time.Duration) (sdMsg, bool) {
	t.Helper()
	buf := make([]byte, 4096)
	oob := make([]byte, syscall.CmsgSpace(syscall.SizeofUcred))
	f.conn.SetReadDeadline(time.Now().Add(timeout))
	n, oobn, _, _, err := f.conn.ReadMsgUnix(buf, oob)
	if err != nil {
		return sdMsg{}, false
	}
	pid := -1
	if msgs, err := syscall.ParseSocketControlMessage(oob[:oobn]); err == nil && len(msgs) > 0 {
		if cred, err := syscall.ParseUnixCredentials(&msgs[0]); err == nil {
			pid = int(cred.Pid)
		}
	}
	return sdMsg{string(buf[:n]), pid}, true
}

// sdUnitValue returns KEY's value in a rendered unit.
func sdUnitValue(unit, key string) string {
	for _, l := range strings.Split(unit, "\n") {
		if v, ok := strings.CutPrefix(l, key+"="); ok {
			return v
		}
	}
	return ""
}

func sdEnv(cmd *exec.Cmd, kv ...string) {
	for _, e := range kv {
		k, _, _ := strings.Cut(e, "=")
		for i, old := range cmd.Env {
			if strings.HasPrefix(old, k+"=") {
				cmd.Env = append(cmd.Env[:i], cmd.Env[i+1:]...)
				break
			}
		}
		cmd.Env = append(cmd.Env, e)
	}
}

func sdFreePort(t *testing.T) int { return ptPorts(t, 1)[0] }

// TestSystemdInstall writes a unit, checks it with systemd itself, then runs
// its ExecStart the way systemd would (NOTIFY_SOCKET set, %t expanded) and
// checks that READY=1 comes from unroot's own pid, only once the published
// port accepts connections.
func TestSystemdInstall(t *testing.T) {
	conf := TempDir(t)
	port := sdFreePort(t)
	install := func(args ...string) Result {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := UserCmd(t, ctx, "unroot", append([]string{"systemd", "install"}, args...)...)
		sdEnv(cmd, "XDG_CONFIG_HOME="+conf)
		return Run(t, cmd)
	}
	args := []string{"web", "--ready=ports", "--", "--net=slirp4netns", "-p", fmt.Sprintf("127.0.0.1:%d:80/tcp", port), "sleep", "60"}

	dry := install(append([]string{"--dry-run"}, args...)...)
	unitPath := filepath.Join(conf, "systemd", "user", "web.service")
	if dry.Code != 0 || fileExists(unitPath) {
		t.Fatalf("--dry-run: exit %d, wrote file: %v\n%s", dry.Code, fileExists(unitPath), dry.Stderr)
	}
	r := install(args...)
	if r.Code != 0 {
		t.Fatalf("install: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	b, err := os.ReadFile(unitPath)
	if err != nil {
		t.Fatal(err)
	}
	unit := string(b)
	if unit != dry.Stdout {
		t.Errorf("--dry-run printed something else than install wrote:\n%s\n---\n%s", dry.Stdout, unit)
	}
	for k, want := range map[string]string{"Type": "notify", "Delegate": "yes", "KillMode": "mixed", "Restart": "on-failure", "WantedBy": "default.target"} {
		if got := sdUnitValue(unit, k); got != want {
			t.Errorf("%s=%q, want %q", k, got, want)
		}
	}
	if strings.Contains(unit, "NotifyAccess") {
		t.Error("unit needs NotifyAccess; unroot is meant to relay")
	}
	sleep, _ := exec.LookPath("sleep")
	wantExec := fmt.Sprintf("%s run --ready=ports --state-dir=%%t/unroot-web --net=slirp4netns -p 127.0.0.1:%d:80/tcp %s 60", filepath.Join(Bin, "unroot"), port, sleep)
	if got := sdUnitValue(unit, "ExecStart"); got != wantExec {
		t.Errorf("ExecStart=%s\nwant      %s", got, wantExec)
	}
	if !strings.Contains(r.Stdout, "wrote "+unitPath) || !strings.Contains(r.Stdout, "systemctl --user enable --now web.service") ||
		!strings.Contains(r.Stdout, "sudo loginctl enable-linger "+testUser.Username) {
		t.Errorf("install output lacks the path, enable or lingering hint:\n%s", r.Stdout)
	}
	if out, err := exec.Command("systemd-analyze", "verify", unitPath).CombinedOutput(); err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	again := install(args...)
	if again.Code != 1 || !strings.Contains(again.Stderr, "exists: pass --force") {
		t.Errorf("second install: exit %d, want 1 with the --force hint: %s", again.Code, again.Stderr)
	}
	if bad := install("web2", "--", "--bogus", "x"); bad.Code != 1 || strings.Count(bad.Stderr, "\n") != 1 || !strings.Contains(bad.Stderr, "--bogus") {
		t.Errorf("bad run flag: exit %d, want 1 and one line naming it: %q", bad.Code, bad.Stderr)
	}

	// Run the ExecStart as systemd would.
	sd := sdListen(t)
	words := strings.Fields(sdUnitValue(unit, "ExecStart"))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	runtimeDir := TempDir(t)
	for i, w := range words {
		words[i] = strings.ReplaceAll(w, "%t", runtimeDir)
	}
	cmd := UserCmd(t, ctx, words[0], words[1:]...)
	sdEnv(cmd, "NOTIFY_SOCKET="+sd.path, "XDG_RUNTIME_DIR="+runtimeDir)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()
	m, ok := sd.recv(t, 30*time.Second)
	if !ok {
		t.Fatalf("no READY=1 within 30s\n%s", stderr.String())
	}
	if !strings.HasPrefix(m.text, "READY=1") || m.pid != cmd.Process.Pid {
		t.Errorf("got %q from pid %d, want READY=1 from unroot (pid %d)", m.text, m.pid, cmd.Process.Pid)
	}
	// Nothing listens behind the port inside (the command is sleep), so the
	// forwarder may reset the connection before the dial returns; a reset
	// still proves the host listener exists, only a refusal would not.
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("READY=1 came before port %d was published: %v", port, err)
	} else if c != nil {
		c.Close()
	}
	if !fileExists(filepath.Join(runtimeDir, "unroot-web", "child_pid")) {
		t.Errorf("state dir %%t/unroot-web has no child_pid")
	}
}

// TestNotifyRelay: the command inside sends READY=1 and STATUS= to the
// NOTIFY_SOCKET unroot gave it; systemd's socket must see them from unroot's
// own pid (no NotifyAccess=all needed), without MAINPID.
func TestNotifyRelay(t *testing.T) {
	sd := sdListen(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := UserCmd(t, ctx, "unroot", "run", "--net=host", "--port-driver=none", "sh", "-c",
		`case "$NOTIFY_SOCKET" in "$ROOTLESSKIT_STATE_DIR"/*) ;; *) echo "NOTIFY_SOCKET=$NOTIFY_SOCKET outside the state dir" >&2; exit 3;; esac
		systemd-notify --ready --status="up inside" && systemd-notify MAINPID=1 STATUS=second && sleep 0.2`)
	sdEnv(cmd, "NOTIFY_SOCKET="+sd.path)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var got []sdMsg
	for len(got) < 2 {
		m, ok := sd.recv(t, 20*time.Second)
		if !ok {
			break
		}
		got = append(got, m)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("unroot run: %v\n%s", err, stderr.String())
	}
	if len(got) != 2 || got[0].text != "READY=1\nSTATUS=up inside" || got[1].text != "STATUS=second" {
		t.Fatalf("systemd got %+v, want READY=1+STATUS then STATUS=second (MAINPID dropped)\n%s", got, stderr.String())
	}
	for _, m := range got {
		if m.pid != cmd.Process.Pid {
			t.Errorf("%q came from pid %d, want unroot's %d", m.text, m.pid, cmd.Process.Pid)
		}
	}
	if extra, ok := sd.recv(t, 200*time.Millisecond); ok {
		t.Errorf("unexpected notification %+v", extra)
	}
}

// TestSocketActivation runs unroot under systemd-socket-activate with 1, 2
// and 3 sockets: the command inside (in its own pid namespace) must find them
// at fds 3.. with LISTEN_PID equal to its own pid.
func TestSocketActivation(t *testing.T) {
	helper := filepath.Join(TempDir(t), "listenfds")
	if out, err := exec.Command("go", "build", "-o", helper, "./testdata/listenfds").CombinedOutput(); err != nil {
		t.Fatalf("build listenfds: %v\n%s", err, out)
	}
	for _, n := range []int{1, 2, 3} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			names := []string{"web", "admin", "metrics"}[:n]
			args := []string{"--fdname=" + strings.Join(names, ":"), "-E", "PATH", "-E", "HOME", "-E", "XDG_RUNTIME_DIR"}
			var ports []int
			for range n {
				p := sdFreePort(t)
				ports = append(ports, p)
				args = append(args, "-l", fmt.Sprintf("127.0.0.1:%d", p))
			}
			args = append(args, "--", filepath.Join(Bin, "unroot"), "run", "--net=host", "--port-driver=none", helper)
			cmd := UserCmd(t, ctx, "systemd-socket-activate", args...)
			var stderr strings.Builder
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			for i, p := range ports {
				var c net.Conn
				var err error
				for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
					if c, err = net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", p)); err == nil {
						break
					}
				}
				if err != nil {
					t.Fatalf("dial %d: %v\n%s", p, err, stderr.String())
				}
				c.SetReadDeadline(time.Now().Add(20 * time.Second))
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
				if f["fd"] != strconv.Itoa(3+i) || f["pid"] == "" || f["pid"] != f["listen_pid"] || f["fds"] != strconv.Itoa(n) ||
					f["names"] != strings.Join(names, ":") || f["uid"] != "0" {
					t.Errorf("socket %d answered %q: want fd %d, LISTEN_PID = own pid, %d fds named %s, uid 0", i, line, 3+i, n, strings.Join(names, ":"))
				}
				if f["pid"] == strconv.Itoa(cmd.Process.Pid) {
					t.Errorf("command saw unroot's pid %s, not its own", f["pid"])
				}
			}
			if err := cmd.Wait(); err != nil {
				t.Errorf("unroot under systemd-socket-activate: %v\n%s", err, stderr.String())
			}
		})
	}
}
