package e2e

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// lcStart starts a long-running launcher as the test user and waits for
// child_pid. The returned stop function kills it (if still running) and
// returns its result.
func lcStart(t *testing.T, name string, args ...string) (state string, childPID int, cmd *exec.Cmd, wait func() Result) {
	t.Helper()
	state = filepath.Join(TempDir(t), "state")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	full := append([]string{"--state-dir=" + state}, args...)
	cmd = UserCmd(t, ctx, name, full...)
	var so, se strings.Builder
	cmd.Stdout, cmd.Stderr = &so, &se
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan Result, 1)
	go func() {
		err := cmd.Wait()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		done <- Result{Stdout: so.String(), Stderr: se.String(), Code: code}
	}()
	var res *Result
	wait = func() Result {
		if res == nil {
			r := <-done
			res = &r
			cancel()
		}
		return *res
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		wait()
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, err := os.ReadFile(filepath.Join(state, "child_pid"))
		if err == nil {
			childPID, err = strconv.Atoi(string(b))
			if err != nil {
				t.Fatalf("child_pid = %q: %v", b, err)
			}
			return state, childPID, cmd, wait
		}
		select {
		case r := <-done:
			res = &r
			t.Fatalf("%s exited %d before child_pid appeared: %s", name, r.Code, r.Stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("child_pid did not appear in %s", state)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func lcAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// A zombie has exited; only its parent has not collected it yet.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// lcTree returns pid and all its descendants.
func lcTree(pid int) []int { return append([]int{pid}, descendants(pid)...) }

// lcSubIDs returns the uid_map lines newuidmap writes for the test user's
// ranges in file: "1 START COUNT", then each further range after it.
func lcSubIDs(t *testing.T, file string) string {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out strings.Builder
	next := 1
	seen := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		p := strings.Split(sc.Text(), ":")
		if len(p) != 3 || (p[0] != testUser.Username && p[0] != testUser.Uid) || seen[p[1]+":"+p[2]] {
			continue
		}
		seen[p[1]+":"+p[2]] = true
		n, _ := strconv.Atoi(p[2])
		fmt.Fprintf(&out, "%d %s %s\n", next, p[1], p[2])
		next += n
	}
	if out.Len() == 0 {
		t.Fatalf("no range for %s in %s", testUser.Username, file)
	}
	return out.String()
}

func TestIDMap(t *testing.T) {
	t.Parallel()
	r := RunUser(t, 30*time.Second, "rootlesskit", "--subid-source=static", "sh", "-c", "cat /proc/self/uid_map; echo --; cat /proc/self/gid_map; echo --; id -u; id -g")
	if r.Code != 0 {
		t.Fatalf("exit %d: %s", r.Code, r.Stderr)
	}
	parts := strings.Split(r.Stdout, "--\n")
	uid, gid := testIDs(t)
	for i, want := range []string{
		fmt.Sprintf("0 %d 1\n%s", uid, lcSubIDs(t, "/etc/subuid")),
		fmt.Sprintf("0 %d 1\n%s", gid, lcSubIDs(t, "/etc/subgid")),
	} {
		var got []string
		for _, l := range strings.Split(strings.TrimSpace(parts[i]), "\n") {
			got = append(got, strings.Join(strings.Fields(l), " "))
		}
		if g := strings.Join(got, "\n") + "\n"; g != want {
			t.Errorf("map %d = %q, want %q", i, g, want)
		}
	}
	if parts[2] != "0\n0\n" {
		t.Errorf("id inside = %q, want 0 and 0", parts[2])
	}
}

func TestExitCodes(t *testing.T) {
	t.Parallel()
	for _, flags := range [][]string{{"--pidns=false"}, {"--pidns=true", "--reaper=auto"}, {"--pidns=true", "--reaper=true"}, {"--pidns=true", "--reaper=false"}} {
		for _, code := range []int{0, 42} {
			args := append(append([]string{}, flags...), "sh", "-exc", fmt.Sprintf("exit %d", code))
			r := RunUser(t, 30*time.Second, "rootlesskit", args...)
			if r.Code != code {
				t.Errorf("rootlesskit %v: exit %d, want %d (stderr %q)", args, r.Code, code, r.Stderr)
			}
		}
	}
}

// integration-exit-code.sh: a signal to child_pid reaches the command; its
// death by signal gives 255 and names the signal.
func TestSignalExit(t *testing.T) {
	t.Parallel()
	for _, pidns := range []string{"--pidns=false", "--pidns=true"} {
		_, pid, _, wait := lcStart(t, "rootlesskit", pidns, "sleep", "infinity")
		if err := syscall.Kill(pid, syscall.SIGUSR1); err != nil {
			t.Fatal(err)
		}
		r := wait()
		if r.Code != 255 || !strings.Contains(r.Stderr, "user defined signal 1") {
			t.Errorf("%s: exit %d, stderr %q; want 255 naming \"user defined signal 1\"", pidns, r.Code, r.Stderr)
		}
	}
}

// A catchable, non-terminating signal sent to unroot while it is still
// starting (here while slirp4netns comes up) is dropped, every time, with a
// line that says so: it never kills the command before the command could
// install its handler. One sent once the command runs reaches it.
func TestSignalDuringStartupDropped(t *testing.T) {
	dir := TempDir(t)
	marker := filepath.Join(dir, "helper-starting")
	slow := filepath.Join(dir, "slow-slirp4netns")
	script := "#!/bin/sh\ncase \"$1\" in --help) exec slirp4netns --help;; esac\ntouch " + marker + "\nsleep 1\nexec slirp4netns \"$@\"\n"
	if err := os.WriteFile(slow, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		os.Remove(marker)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		cmd := UserCmd(t, ctx, "unroot", "run", "--net=slirp4netns", "--slirp4netns-binary="+slow, "--",
			"sh", "-c", "trap 'echo got-usr1' USR1; sleep 0.5; echo end")
		var so, se strings.Builder
		cmd.Stdout, cmd.Stderr = &so, &se
		if err := cmd.Start(); err != nil {
			cancel()
			t.Fatal(err)
		}
		WaitFile(t, marker, 10*time.Second)
		cmd.Process.Signal(syscall.SIGUSR1)
		err := cmd.Wait()
		cancel()
		if err != nil || so.String() != "end\n" || !strings.Contains(se.String(), "dropped") {
			t.Fatalf("run %d: %v, stdout %q, stderr %q; want the command to run to its end, the signal dropped and said so", i, err, so.String(), se.String())
		}
	}
}

// A command line the kernel takes for a direct exec starts under unroot
// and rootlesskit too: one argument of 100,000 bytes, 200 of 1,000 bytes
// (each past the 128 KiB that one environment string may hold, once
// encoded), and a 1 MB total.
func TestLongCommandLine(t *testing.T) {
	t.Parallel()
	many := []string{"sh", "-c", `n=0; for a; do n=$((n + ${#a})); done; echo "$# $n"`, "sh"}
	for range 200 {
		many = append(many, strings.Repeat("m", 1000))
	}
	huge := []string{"sh", "-c", `n=0; for a; do n=$((n + ${#a})); done; echo "$# $n"`, "sh"}
	for range 8 {
		huge = append(huge, strings.Repeat("h", 125_000))
	}
	for _, tc := range []struct {
		cmd  []string
		want string
	}{
		{[]string{"sh", "-c", `echo "${#1}"`, "sh", strings.Repeat("a", 100_000)}, "100000"},
		{many, "200 200000"},
		{huge, "8 1000000"},
	} {
		for _, name := range []string{"unroot", "rootlesskit"} {
			args := append([]string{"--net=none", "--"}, tc.cmd...)
			if name == "unroot" {
				args = append([]string{"run"}, args...)
			}
			r := RunUser(t, 30*time.Second, name, args...)
			if r.Code != 0 || strings.TrimSpace(r.Stdout) != tc.want {
				t.Errorf("%s with %d arguments: exit %d, stdout %q, stderr %.300q; want %q", name, len(tc.cmd), r.Code, r.Stdout, r.Stderr, tc.want)
			}
		}
	}
}

// SIGTERM to unroot itself is forwarded to the command (the benchmarks
// `kill $rkpid`), which here traps it and exits 7.
func TestSignalForwarding(t *testing.T) {
	t.Parallel()
	state, _, cmd, wait := lcStart(t, "unroot", "run", "--net=none", "--", "sh", "-c", "trap 'exit 7' TERM; touch $ROOTLESSKIT_STATE_DIR/../trapped; while :; do sleep 0.05; done")
	WaitFile(t, filepath.Join(state, "..", "trapped"), 10*time.Second)
	cmd.Process.Signal(syscall.SIGTERM)
	if r := wait(); r.Code != 7 {
		t.Errorf("exit %d, want 7 from the command's TERM trap (stderr %q)", r.Code, r.Stderr)
	}
}

// integration-pdeathsig.sh: SIGKILL of the launcher takes the namespace
// init and the command with it (given 10 s: a loaded machine may take a
// while to run their exits).
func TestKillTree(t *testing.T) {
	t.Parallel()
	for _, flags := range [][]string{{"--pidns", "--reaper=true"}, {"--reaper=false"}, {"--net=slirp4netns", "--pidns"}} {
		args := append(append([]string{}, flags...), "sh", "-c", "sleep 30; echo finished")
		_, pid, cmd, wait := lcStart(t, "rootlesskit", args...)
		tree := lcTree(cmd.Process.Pid)
		if len(tree) < 3 {
			t.Fatalf("%v: process tree %v, want launcher, init and command", flags, tree)
		}
		syscall.Kill(cmd.Process.Pid, syscall.SIGKILL)
		wait()
		// The kernel kills them at once; a loaded machine may take a
		// while to run their exits.
		deadline := time.Now().Add(10 * time.Second)
		for {
			var alive []int
			for _, p := range tree {
				if lcAlive(p) {
					alive = append(alive, p)
				}
			}
			if len(alive) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("%v: %v still alive 10 s after SIGKILL of the launcher (child %d)", flags, alive, pid)
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func TestLockConflictAndRestart(t *testing.T) {
	t.Parallel()
	state, _, cmd, wait := lcStart(t, "rootlesskit", "--net=slirp4netns", "--port-driver=builtin", "sleep", "infinity")
	r := RunUser(t, 20*time.Second, "rootlesskit", "--state-dir="+state, "true")
	if r.Code != 1 || !strings.Contains(r.Stderr, "another RootlessKit is running with the same state directory?") || strings.Count(strings.TrimSpace(r.Stderr), "\n") != 0 {
		t.Errorf("second instance: exit %d, stderr %q; want 1 and one line about the lock", r.Code, r.Stderr)
	}
	// integration-restart.sh: kill -9, then the same state dir works again.
	syscall.Kill(cmd.Process.Pid, syscall.SIGKILL)
	wait()
	r = RunUser(t, 30*time.Second, "rootlesskit", "--state-dir="+state, "--net=slirp4netns", "--port-driver=builtin", "sh", "-c", "for i in $(seq 100); do test -S $ROOTLESSKIT_STATE_DIR/api.sock && exit 0; sleep 0.05; done; exit 3")
	if r.Code != 0 {
		t.Errorf("restart on the stale state dir: exit %d, stderr %q", r.Code, r.Stderr)
	}
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Errorf("state dir %s left after exit (%v)", state, err)
	}
}

func TestNoLeaks(t *testing.T) {
	t.Parallel()
	// Every process these runs start inherits a marker in its environment
	// (other users of the test account, such as benchmarks, do not), and
	// they get a private TMPDIR for their default state directories.
	mark := fmt.Sprintf("UNROOT_LEAK_MARK=%d", time.Now().UnixNano())
	tmp := TempDir(t)
	for _, args := range [][]string{
		{"--net=slirp4netns", "--copy-up=/etc", "--pidns", "true"},
		{"--net=pasta", "--port-driver=implicit", "true"},
		{"--net=none", "--detach-netns", "true"},
		{"--net=slirp4netns", "--cidr=10.0.2.100/24", "true"},
		// Without a PID namespace a background child must not outlive us either.
		{"--net=none", "sh", "-c", "sleep 30 >/dev/null 2>&1 & exit 0"},
		{"--pidns", "sh", "-c", "sleep 30 >/dev/null 2>&1 & exit 0"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		cmd := UserCmd(t, ctx, "rootlesskit", args...)
		for i, e := range cmd.Env {
			if strings.HasPrefix(e, "TMPDIR=") {
				cmd.Env[i] = "TMPDIR=" + tmp
			}
		}
		cmd.Env = append(cmd.Env, mark)
		Run(t, cmd)
		cancel()
	}
	// A process killed as the run ended may still be exiting: give it
	// time, then name what is left.
	var left []string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if left = marked(mark); len(left) == 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, l := range left {
		t.Errorf("left running: %s", l)
	}
	if ents, _ := os.ReadDir(tmp); len(ents) != 0 {
		t.Errorf("%d entries left in TMPDIR (default state dirs not removed), first %s", len(ents), ents[0].Name())
	}
}

// marked lists the live processes whose environment holds mark, with
// their command lines.
func marked(mark string) []string {
	var left []string
	environs, _ := filepath.Glob("/proc/[0-9]*/environ")
	for _, e := range environs {
		b, err := os.ReadFile(e)
		if err != nil || !strings.Contains(string(b), mark) {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join(filepath.Dir(e), "cmdline"))
		if lcAlive(atoiOr0(filepath.Base(filepath.Dir(e)))) {
			left = append(left, fmt.Sprintf("%s %q", filepath.Dir(e), strings.ReplaceAll(string(cmdline), "\x00", " ")))
		}
	}
	return left
}

func atoiOr0(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// nerdctl and dockerd enter the namespaces with nsenter -t $(cat child_pid).
func TestNsenter(t *testing.T) {
	t.Parallel()
	_, pid, _, _ := lcStart(t, "rootlesskit", "--net=slirp4netns", "--copy-up=/etc", "--pidns", "sleep", "infinity")
	r := RunUser(t, 10*time.Second, "nsenter", "-t", strconv.Itoa(pid), "-U", "-m", "-n", "--preserve-credentials", "sh", "-c", "id -u; cat /etc/resolv.conf; ip -o -4 addr show tap0")
	if r.Code != 0 || !strings.HasPrefix(r.Stdout, "0\n") || !strings.Contains(r.Stdout, "nameserver 10.0.2.3") || !strings.Contains(r.Stdout, "10.0.2.100/24") {
		t.Errorf("nsenter: exit %d, stdout %q, stderr %q; want uid 0, the namespace's resolv.conf and tap0", r.Code, r.Stdout, r.Stderr)
	}
}

func TestDetachNetNS(t *testing.T) {
	t.Parallel()
	hostNet, _ := os.Readlink("/proc/self/ns/net")
	state, pid, _, _ := lcStart(t, "rootlesskit", "--net=slirp4netns", "--detach-netns", "--copy-up=/etc", "sh", "-c", "readlink /proc/self/ns/net >$ROOTLESSKIT_STATE_DIR/../cmdnet.tmp && mv $ROOTLESSKIT_STATE_DIR/../cmdnet.tmp $ROOTLESSKIT_STATE_DIR/../cmdnet; sleep infinity")
	WaitFile(t, filepath.Join(state, "..", "cmdnet"), 5*time.Second)
	b, _ := os.ReadFile(filepath.Join(state, "..", "cmdnet"))
	if strings.TrimSpace(string(b)) != hostNet {
		t.Errorf("command netns %q, want the host's %q", strings.TrimSpace(string(b)), hostNet)
	}
	if _, err := os.Stat(filepath.Join(state, "netns")); err != nil {
		t.Errorf("STATE/netns: %v", err)
	}
	r := RunUser(t, 10*time.Second, "nsenter", "-t", strconv.Itoa(pid), "-U", "-m", "--preserve-credentials", "nsenter", "-n"+filepath.Join(state, "netns"), "ip", "-o", "-4", "addr", "show", "tap0")
	if r.Code != 0 || !strings.Contains(r.Stdout, "10.0.2.100/24") {
		t.Errorf("tap0 in STATE/netns: exit %d, stdout %q, stderr %q", r.Code, r.Stdout, r.Stderr)
	}
	for _, f := range []string{"resolv.conf", "hosts"} {
		if _, err := os.Stat(filepath.Join(state, f)); err != nil {
			t.Errorf("STATE/%s: %v", f, err)
		}
	}
}

func TestCopyUpAndNetworkFiles(t *testing.T) {
	t.Parallel()
	before, _ := os.ReadFile("/etc/hostname")
	script := `set -e
echo inside >/etc/unroot-e2e-marker
rm /etc/hostname; echo changed >/etc/hostname
test "$(readlink /etc/passwd)" != ""
cat /etc/resolv.conf
grep -c . /etc/hosts >/dev/null
grep -q "^127.0.0.1 $(hostname)" /etc/hosts && echo hosts-ok
ip -o -4 route show default
ls /sys/class/net | tr '\n' ' '
`
	for _, net := range []string{"slirp4netns", "pasta"} {
		r := RunUser(t, 30*time.Second, "rootlesskit", "--net="+net, "--copy-up=/etc", "--disable-host-loopback", "sh", "-c", script)
		if r.Code != 0 {
			t.Fatalf("--net=%s: exit %d: %s", net, r.Code, r.Stderr)
		}
		for _, want := range []string{"nameserver 10.0.2.3\n", "hosts-ok", "default via 10.0.2.2 dev tap0", "lo tap0"} {
			if !strings.Contains(r.Stdout, want) {
				t.Errorf("--net=%s: output lacks %q:\n%s", net, want, r.Stdout)
			}
		}
	}
	if _, err := os.Stat("/etc/unroot-e2e-marker"); !os.IsNotExist(err) {
		t.Errorf("a write to /etc inside reached the host (%v)", err)
	}
	if after, _ := os.ReadFile("/etc/hostname"); string(after) != string(before) {
		t.Errorf("host /etc/hostname changed: %q → %q", before, after)
	}
	r := RunUser(t, 10*time.Second, "rootlesskit", "--copy-up=/tmp", "true")
	if r.Code != 1 || !strings.Contains(r.Stderr, "/tmp") {
		t.Errorf("--copy-up=/tmp: exit %d, stderr %q; want 1 naming /tmp", r.Code, r.Stderr)
	}
}

func TestEnvironment(t *testing.T) {
	t.Parallel()
	_, gid := testIDs(t)
	cmd := UserCmd(t, context.Background(), "rootlesskit", "sh", "-c", `echo "$ROOTLESSKIT_STATE_DIR|$ROOTLESSKIT_PARENT_EUID|$ROOTLESSKIT_PARENT_EGID|$MY_VAR|$_UNROOT_CHILD"`)
	cmd.Env = append(cmd.Env, "MY_VAR=kept")
	r := Run(t, cmd)
	f := strings.Split(strings.TrimSpace(r.Stdout), "|")
	if r.Code != 0 || len(f) != 5 {
		t.Fatalf("exit %d, stdout %q", r.Code, r.Stdout)
	}
	if !filepath.IsAbs(f[0]) || !strings.HasPrefix(filepath.Base(f[0]), "rootlesskit") {
		t.Errorf("ROOTLESSKIT_STATE_DIR = %q, want an absolute $TMPDIR/rootlesskitNNN", f[0])
	}
	if f[1] != testUser.Uid || f[2] != strconv.Itoa(gid) || f[3] != "kept" || f[4] != "" {
		t.Errorf("env = %q; want euid %s, egid %d, MY_VAR kept, no internal variable", f, testUser.Uid, gid)
	}
}

func TestAPIInfo(t *testing.T) {
	t.Parallel()
	state, pid, _, _ := lcStart(t, "rootlesskit", "--net=none", "sleep", "infinity")
	if fi, err := os.Stat(filepath.Join(state, "api.sock")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("api.sock mode %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	r := RunUser(t, 10*time.Second, "curl", "-fsS", "--unix-socket", filepath.Join(state, "api.sock"), "http://rootlesskit/v1/info")
	var info struct {
		APIVersion    string
		StateDir      string
		ChildPID      int
		NetworkDriver *struct{ Driver string }
	}
	if err := json.Unmarshal([]byte(r.Stdout), &info); err != nil {
		t.Fatalf("info %q: %v (stderr %q)", r.Stdout, err, r.Stderr)
	}
	if info.APIVersion != "1.1.3" || info.StateDir != state || info.ChildPID != pid || info.NetworkDriver == nil || info.NetworkDriver.Driver != "none" {
		t.Errorf("info = %+v; want 1.1.3, %s, %d, driver none", info, state, pid)
	}
	// Root is served, as RootlessKit serves it (rootlessctl run by root).
	c := http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return net.Dial("unix", filepath.Join(state, "api.sock"))
	}}, Timeout: 2 * time.Second}
	resp, err := c.Get("http://rootlesskit/v1/info")
	if err != nil {
		t.Fatalf("root: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("root got %s from api.sock, want 200", resp.Status)
	}
	// A third user that can reach the socket gets 403 and the reason.
	sock := filepath.Join(state, "api.sock")
	for d := sock; d != "/"; d = filepath.Dir(d) {
		if fi, err := os.Stat(d); err == nil {
			os.Chmod(d, fi.Mode().Perm()|0o005|map[bool]os.FileMode{true: 0o002}[d == sock])
		}
	}
	cmd := exec.Command("curl", "-sS", "--max-time", "5", "-w", "\n%{http_code}", "--unix-socket", sock, "http://rootlesskit/v1/info")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.HasSuffix(strings.TrimSpace(string(out)), "\n403") || !strings.Contains(string(out), "and root, not uid 65534") {
		t.Errorf("uid 65534 on api.sock: %v, %s; want 403 saying why", err, out)
	}
}

// Every bad invocation: exit 1, one line naming the problem, fast, nothing
// left behind.
func TestBadInput(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--net=slirp4netns", "--cidr=10.0.2.100/24", "true"}, "cidr must be like 10.0.2.0/24, not like 10.0.2.100/24"},
		{[]string{"--net=slirp4netns", "--mtu=70000", "true"}, "mtu must be <= 65521"},
		{[]string{"--no-such-flag", "true"}, "Incorrect Usage"},
		{[]string{"--reaper=true", "true"}, "--reaper=true requires --pidns"},
		{[]string{"--net=slirp4netns", "--slirp4netns-binary=/nonexistent/slirp4netns", "true"}, "/nonexistent/slirp4netns"},
		{[]string{"--net=pasta", "--pasta-binary=/nonexistent/pasta", "true"}, "/nonexistent/pasta"},
		{[]string{"--propagation=rshared", "--copy-up=/etc", "true"}, "rshared"},
		{[]string{"--port-driver=builtin", "true"}, "port driver requires non-host network"},
		{[]string{"--net=none", "--publish=127.0.0.1:8080:80/tcp", "true"}, "port driver"},
		{[]string{"--net=slirp4netns", "--disable-host-loopback", "--port-driver=builtin", "-p", "", "true"}, "--publish: empty value"},
		{[]string{"--on-network-failure=maybe", "true"}, "must be exit or keep"},
		{[]string{}, "no command specified"},
		{[]string{"no-such-command-xyz"}, "no-such-command-xyz"},
		// Failures inside the namespace, after the clone.
		{[]string{"--net=slirp4netns", "--disable-host-loopback", "--copy-up=/nonexistent-dir", "true"}, "/nonexistent-dir"},
		{[]string{"--net=slirp4netns", "--disable-host-loopback", "--slirp4netns-binary=/bin/false", "true"}, "slirp4netns"},
	}
	for _, tt := range tests {
		state := filepath.Join(TempDir(t), "state")
		args := append([]string{"--state-dir=" + state}, tt.args...)
		start := time.Now()
		r := RunUser(t, 10*time.Second, "rootlesskit", args...)
		lines := strings.Split(strings.TrimSpace(r.Stderr), "\n")
		if r.Code != 1 || !strings.Contains(r.Stderr, tt.want) || len(lines) != 1 || strings.Contains(r.Stderr, "goroutine") {
			t.Errorf("rootlesskit %v: exit %d, stderr %q; want 1 and one line containing %q", tt.args, r.Code, r.Stderr, tt.want)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("rootlesskit %v took %v", tt.args, d)
		}
		if _, err := os.Stat(state); !os.IsNotExist(err) {
			t.Errorf("rootlesskit %v left %s behind", tt.args, state)
		}
	}
}

func TestCLI(t *testing.T) {
	t.Parallel()
	r := RunUser(t, 10*time.Second, "rootlesskit", "--help")
	for _, want := range []string{"--detach-netns", "--source-ip-transparent", "--source-ip-transparent-backend", "--pesto-binary", "--print-semver", "--publish, -p", "--subid-source", "--state-dir"} {
		if r.Code != 0 || !strings.Contains(r.Stdout, want) {
			t.Errorf("rootlesskit --help lacks %q (exit %d)", want, r.Code)
		}
	}
	r = RunUser(t, 10*time.Second, "rootlesskit", "--version")
	if r.Stdout != "rootlesskit version 3.3.0+unroot\n" {
		t.Errorf("--version = %q", r.Stdout)
	}
	for _, args := range [][]string{{"--version"}, {"version"}} {
		if r := RunUser(t, 10*time.Second, "unroot", args...); r.Code != 0 || r.Stdout != "unroot version 3.3.0+unroot\n" {
			t.Errorf("unroot %v: exit %d, %q, %q", args, r.Code, r.Stdout, r.Stderr)
		}
	}
	r = RunUser(t, 10*time.Second, "rootlesskit", "--print-semver=major")
	if strings.TrimSpace(r.Stdout) != "3" {
		t.Errorf("--print-semver=major = %q, want 3", r.Stdout)
	}
	// Grammar: bool flags do not take a separate value, so "true" is the command.
	r = RunUser(t, 10*time.Second, "rootlesskit", "--pidns", "true", "ignored-arg")
	if r.Code != 0 {
		t.Errorf("rootlesskit --pidns true: exit %d, %q", r.Code, r.Stderr)
	}
	// Single-dash long flags, comma-split slices, and flags of the command left alone.
	r = RunUser(t, 20*time.Second, "rootlesskit", "-net=none", "--copy-up=/etc,/run", "sh", "-c", `test -L /etc/passwd && test -d /run && echo "$0 $1"`, "--net=x", "-p")
	if r.Code != 0 || strings.TrimSpace(r.Stdout) != "--net=x -p" {
		t.Errorf("grammar: exit %d, stdout %q, stderr %q", r.Code, r.Stdout, r.Stderr)
	}
	r = RunUser(t, 10*time.Second, "unroot", "run", "--help")
	if r.Code != 0 || !strings.Contains(r.Stdout, "--detach-netns") || !strings.Contains(r.Stdout, "auto") {
		t.Errorf("unroot run --help: exit %d, %q", r.Code, r.Stdout)
	}
}

func TestUnrootRunDefaults(t *testing.T) {
	t.Parallel()
	r := RunUser(t, 30*time.Second, "unroot", "run", "--", "sh", "-c", "echo init=$(tr '\\0' ' ' </proc/1/cmdline); touch /etc/x && echo etc-writable")
	if r.Code != 0 || !strings.Contains(r.Stdout, "unroot run --") || !strings.Contains(r.Stdout, "etc-writable") {
		t.Errorf("unroot run: exit %d, stdout %q, stderr %q; want pid 1 (--pidns) and a writable /etc", r.Code, r.Stdout, r.Stderr)
	}
}

// -p ports are published before child_pid appears, through the socket pool.
func TestPublishBeforeChildPID(t *testing.T) {
	t.Parallel()
	hostPort := ptPorts(t, 1)[0]
	spec := fmt.Sprintf("127.0.0.1:%d:8080/tcp", hostPort)
	state, _, _, _ := lcStart(t, "rootlesskit", "--net=slirp4netns", "--disable-host-loopback", "--port-driver=builtin", "-p", spec,
		"sh", "-c", "busybox nc -lk -p 8080 -e echo forwarded 2>/dev/null || busybox nc -ll -p 8080 -e echo forwarded")
	deadline := time.Now().Add(20 * time.Second) // nc listens a moment after child_pid
	var got string
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", hostPort), time.Second)
		if err == nil {
			c.SetDeadline(time.Now().Add(2 * time.Second))
			b := make([]byte, 64)
			n, _ := c.Read(b)
			c.Close()
			got = string(b[:n])
			if strings.Contains(got, "forwarded") {
				break
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(got, "forwarded") {
		t.Errorf("connection to published %s got %q, want the command's reply", spec, got)
	}
	r := RunUser(t, 10*time.Second, "rootlessctl", "--socket", filepath.Join(state, "api.sock"), "list-ports", "--json")
	if r.Code != 0 || !strings.Contains(r.Stdout, fmt.Sprintf(`"parentPort":%d`, hostPort)) {
		t.Errorf("rootlessctl list-ports: exit %d, %q %q", r.Code, r.Stdout, r.Stderr)
	}
}

// integration-run-without-reap.sh: without a reaper the command keeps the
// controlling terminal.
func TestNoReaperKeepsTTY(t *testing.T) {
	t.Parallel()
	r := RunUser(t, 20*time.Second, "script", "-qec", "rootlesskit --reaper=false sh -c 'tty; echo DONE'", "/dev/null")
	if r.Code != 0 || !strings.Contains(r.Stdout, "/dev/pts/") || !strings.Contains(r.Stdout, "DONE") || strings.Contains(r.Stdout+r.Stderr, "cannot set terminal process group") {
		t.Errorf("exit %d, stdout %q, stderr %q; want a tty and DONE", r.Code, r.Stdout, r.Stderr)
	}
}

// With no subordinate ranges only the user is mapped, with one warning
// line that says how to add ranges.
func TestSingleIDFallback(t *testing.T) {
	t.Parallel()
	fake := filepath.Join(TempDir(t), "getsubids")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := UserCmd(t, context.Background(), "rootlesskit", "--subid-source=dynamic", "--net=none", "cat", "/proc/self/uid_map", "/proc/self/gid_map")
	cmd.Env = append(cmd.Env, "GETSUBIDS="+fake)
	r := Run(t, cmd)
	uid, gid := testIDs(t)
	got := strings.Join(strings.Fields(r.Stdout), " ")
	if r.Code != 0 || got != fmt.Sprintf("0 %d 1 0 %d 1", uid, gid) {
		t.Errorf("exit %d, maps %q; want only %d and %d mapped", r.Code, got, uid, gid)
	}
	if lines := strings.Split(strings.TrimSpace(r.Stderr), "\n"); len(lines) != 1 || !strings.Contains(r.Stderr, "usermod --add-subuids") {
		t.Errorf("stderr %q, want one warning line with the usermod fix", r.Stderr)
	}
	// The suggested range is free: no entry of /etc/subuid or /etc/subgid
	// overlaps it (other users' ranges are taken).
	var lo, hi uint64
	if i := strings.Index(r.Stderr, "--add-subuids "); i < 0 {
		t.Fatalf("no range in %q", r.Stderr)
	} else if _, err := fmt.Sscanf(r.Stderr[i:], "--add-subuids %d-%d", &lo, &hi); err != nil || hi-lo != 65535 {
		t.Fatalf("range in %q: %v", r.Stderr, err)
	}
	for _, f := range []string{"/etc/subuid", "/etc/subgid"} {
		b, _ := os.ReadFile(f)
		for _, line := range strings.Split(string(b), "\n") {
			var start, n uint64
			if p := strings.Split(line, ":"); len(p) == 3 {
				start, _ = strconv.ParseUint(p[1], 10, 64)
				n, _ = strconv.ParseUint(p[2], 10, 64)
			}
			if n > 0 && start <= hi && lo < start+n {
				t.Errorf("suggested %d-%d overlaps %s entry %q", lo, hi, f, line)
			}
		}
	}
}

// A host without newuidmap fails before anything starts, naming the package.
func TestNoNewuidmap(t *testing.T) {
	t.Parallel()
	cmd := UserCmd(t, context.Background(), "rootlesskit", "--subid-source=static", "/bin/true")
	for i, e := range cmd.Env {
		if strings.HasPrefix(e, "PATH=") {
			cmd.Env[i] = "PATH=" + Bin
		}
	}
	r := Run(t, cmd)
	if r.Code != 1 || !strings.Contains(r.Stderr, "newuidmap") || !strings.Contains(r.Stderr, "uidmap") {
		t.Errorf("exit %d, stderr %q; want 1 naming newuidmap and the uidmap package", r.Code, r.Stderr)
	}
}

// The embedded netstack gets its tap fd from the namespace init (OpenTap).
func TestNetstackTap(t *testing.T) {
	t.Parallel()
	r := RunUser(t, 30*time.Second, "unroot", "run", "--net=netstack", "--", "sh", "-c", "ip -4 -o addr show tap0; ip route show default")
	if r.Code != 0 || !strings.Contains(r.Stdout, "10.0.2.100/24") || !strings.Contains(r.Stdout, "default via") {
		t.Errorf("exit %d, stdout %q, stderr %q", r.Code, r.Stdout, r.Stderr)
	}
}

// The builtin port driver keeps a non-loopback client's address (TCP),
// through the sockets and the policy routing the namespace init sets up.
// Everything runs in a network namespace the test makes, whose lo carries
// the client address, so no traffic touches the machine's own network.
func TestClientAddressThroughLauncher(t *testing.T) {
	t.Parallel()
	clientAddressThroughLauncher(t, "")
}

// The same with RootlessKit 3.3's --source-ip-transparent-backend=nft: the
// connmark rules are an nft table instead of iptables rules.
func TestClientAddressThroughLauncherNFT(t *testing.T) {
	t.Parallel()
	clientAddressThroughLauncher(t, "nft")
}

func clientAddressThroughLauncher(t *testing.T, firewall string) {
	ns := bpNetNS(t, "client"+firewall)
	dir := TempDir(t)
	cgi := filepath.Join(dir, "www", "cgi-bin")
	os.MkdirAll(cgi, 0o755)
	os.WriteFile(filepath.Join(cgi, "who"), []byte("#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\n%s\\n' \"$REMOTE_ADDR\"\n"), 0o755)
	uid, gid := testIDs(t)
	state := filepath.Join(dir, "state")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns, "setpriv", "--reuid", strconv.Itoa(uid), "--regid", strconv.Itoa(gid), "--clear-groups",
		filepath.Join(Bin, "rootlesskit"), "--state-dir="+state, "--net=slirp4netns", "--disable-host-loopback", "--port-driver=builtin", "--source-ip-transparent-backend="+cmp.Or(firewall, "auto"),
		"-p", "0.0.0.0:8080:80/tcp", "-p", "0.0.0.0:8081:10.0.2.100:80/tcp", "busybox", "httpd", "-f", "-p", "80", "-h", filepath.Join(dir, "www"))
	cmd.Env = []string{"PATH=" + Bin + ":/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + testUser.HomeDir, "TMPDIR=/tmp"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
	}()
	WaitFile(t, filepath.Join(state, "child_pid"), 20*time.Second)
	b, _ := os.ReadFile(filepath.Join(state, "child_pid"))
	childPID := strings.TrimSpace(string(b))
	who := func(port int) {
		t.Helper()
		var got string
		for range 50 {
			out, err := exec.Command("ip", "netns", "exec", ns, "curl", "-fsS", "-m", "2", "--interface", "198.18.0.1", fmt.Sprintf("http://198.18.0.1:%d/cgi-bin/who", port)).CombinedOutput()
			got = strings.TrimSpace(string(out))
			if err == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		// busybox httpd listens on ::, so an IPv4 client shows as ::ffff:a.b.c.d.
		if got != "198.18.0.1" && got != "[::ffff:198.18.0.1]" && got != "::ffff:198.18.0.1" {
			t.Errorf("through port %d the command saw the client as %q, want 198.18.0.1 (stderr: %s)", port, got, stderr.String())
		}
	}
	connmark := func() bool {
		t.Helper()
		if firewall == "nft" {
			out, err := exec.Command("nsenter", "-t", childPID, "-n", "nft", "list", "table", "inet", "unroot").CombinedOutput()
			ipt, _ := exec.Command("nsenter", "-t", childPID, "-n", "iptables", "-w", "5", "-t", "mangle", "-S", "OUTPUT").CombinedOutput()
			if strings.Contains(string(ipt), "CONNMARK") {
				t.Errorf("--source-ip-transparent-backend=nft made iptables rules: %s", ipt)
			}
			return err == nil && strings.Contains(string(out), "ct mark set")
		}
		out, err := exec.Command("nsenter", "-t", childPID, "-n", "iptables", "-w", "5", "-t", "mangle", "-S", "OUTPUT").CombinedOutput()
		if err != nil {
			t.Fatalf("iptables in the child's netns: %v: %s", err, out)
		}
		return strings.Contains(string(out), "CONNMARK")
	}
	// A server on the child's loopback (the default child IP) needs policy
	// routing only: no iptables rule is added for it.
	who(8080)
	if connmark() {
		t.Error("a port to the child's loopback added the connmark rules; only other child IPs need them")
	}
	// A server on the child's own address needs the connmark rules.
	who(8081)
	if !connmark() {
		t.Error("a port to 10.0.2.100 kept the client's address without the connmark rules")
	}
}

// SIGTERM at any moment of the start-up ends the run: it is never dropped
// by an init that has no handler yet.
func TestSignalDuringStartup(t *testing.T) {
	t.Parallel()
	for _, delay := range []time.Duration{0, 2 * time.Millisecond, 5 * time.Millisecond, 10 * time.Millisecond, 20 * time.Millisecond, 40 * time.Millisecond} {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		// A dropped signal lets the run go on for the command's whole
		// minute; a loaded machine may take seconds to tear it down.
		cmd := UserCmd(t, ctx, "rootlesskit", "--net=slirp4netns", "--disable-host-loopback", "--pidns", "--copy-up=/etc", "sleep", "60")
		if err := cmd.Start(); err != nil {
			cancel()
			t.Fatal(err)
		}
		time.Sleep(delay)
		cmd.Process.Signal(syscall.SIGTERM)
		start := time.Now()
		cmd.Wait()
		if d := time.Since(start); d > 15*time.Second {
			t.Errorf("SIGTERM %v after start: the run went on for %v", delay, d)
		}
		cancel()
	}
}
