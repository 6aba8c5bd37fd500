package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/unroot/unroot/api"
)

// oneShotSlirp4netns writes a stand-in that runs the real slirp4netns the
// first time and refuses every later start: a helper that cannot be
// restarted.
func oneShotSlirp4netns(t *testing.T, dir string) string {
	t.Helper()
	fake := filepath.Join(dir, "one-shot-slirp4netns")
	script := "#!/bin/sh\ncase \"$1\" in --help) exec slirp4netns --help;; esac\n" +
		"if [ -e " + dir + "/started ]; then echo 'refusing to start again' >&2; exit 1; fi\n" +
		"touch " + dir + "/started\nexec slirp4netns \"$@\"\n"
	if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return fake
}

// killHelper kills the launcher's helper called name and returns its pid.
func killHelper(t *testing.T, launcherPID int, name string) int {
	t.Helper()
	for _, p := range descendants(launcherPID) {
		if comm(p) == name {
			syscall.Kill(p, syscall.SIGKILL)
			return p
		}
	}
	t.Fatalf("no %s under the launcher", name)
	return 0
}

// info reads /v1/info through `unroot info --json`.
func info(t *testing.T, state string) api.Info {
	t.Helper()
	r := RunUser(t, 10*time.Second, "unroot", "info", "--json", "--state-dir", state)
	var i api.Info
	if err := json.Unmarshal([]byte(r.Stdout), &i); err != nil {
		t.Fatalf("unroot info --json: %v\nstdout: %s\nstderr: %s", err, r.Stdout, r.Stderr)
	}
	return i
}

// waitHealth polls /v1/info until the network health satisfies ok.
func waitHealth(t *testing.T, state string, ok func(api.NetworkHealth) bool) api.NetworkHealth {
	t.Helper()
	var h api.NetworkHealth
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		i := info(t, state)
		if i.Health == nil || i.Health.Network == nil {
			t.Fatalf("/v1/info has no network health: %+v", i)
		}
		if h = *i.Health.Network; ok(h) {
			return h
		}
	}
	t.Fatalf("network health never got there; last %+v", h)
	return h
}

// A helper that dies and cannot be restarted stops the run by default:
// the command gets SIGTERM, and unroot exits 1 with one line that says why.
func TestNetworkFailureExit(t *testing.T) {
	t.Parallel()
	dir := TempDir(t)
	fake := oneShotSlirp4netns(t, dir)
	_, _, cmd, wait := lcStart(t, "unroot", "run", "--net=slirp4netns", "--slirp4netns-binary="+fake, "--",
		"sh", "-c", "trap 'echo got-term; exit 0' TERM; while :; do sleep 0.05; done")
	begin := time.Now()
	killHelper(t, cmd.Process.Pid, "slirp4netns")
	r := wait()
	if r.Code != 1 || !strings.Contains(r.Stdout, "got-term") {
		t.Errorf("exit %d, stdout %q; want 1 after the command got SIGTERM\nstderr: %s", r.Code, r.Stdout, r.Stderr)
	}
	if !strings.Contains(r.Stderr, "unroot: network driver slirp4netns is down:") || !strings.Contains(r.Stderr, "refusing to start again") {
		t.Errorf("stderr %q: want the reason the network is down", r.Stderr)
	}
	if d := time.Since(begin); d > 15*time.Second {
		t.Errorf("took %v to give up", d)
	}
}

// With --on-network-failure=keep the command runs on, and /v1/info (and
// unroot info) says the network is down and why.
func TestNetworkFailureKeep(t *testing.T) {
	t.Parallel()
	dir := TempDir(t)
	fake := oneShotSlirp4netns(t, dir)
	state, _, cmd, wait := lcStart(t, "rootlesskit", "--net=slirp4netns", "--slirp4netns-binary="+fake, "--on-network-failure=keep", "--",
		"sh", "-c", "trap 'exit 7' TERM; while :; do sleep 0.05; done")
	if h := info(t, state).Health; h == nil || h.Network == nil || h.Network.State != "up" || h.Network.Driver != "slirp4netns" {
		t.Fatalf("health before = %+v, want slirp4netns up", h)
	}
	killHelper(t, cmd.Process.Pid, "slirp4netns")
	h := waitHealth(t, state, func(h api.NetworkHealth) bool { return h.State == "down" })
	if h.Restarts != 0 || !strings.Contains(h.LastError, "refusing to start again") {
		t.Errorf("health = %+v, want down, no restart, the refusal as last error", h)
	}
	r := RunUser(t, 10*time.Second, "unroot", "info", "--state-dir", state)
	if !strings.Contains(r.Stdout, "Network health") || !strings.Contains(r.Stdout, "down, 0 restarts; last error:") {
		t.Errorf("unroot info:\n%s%s", r.Stdout, r.Stderr)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	res := wait()
	if res.Code != 7 || !strings.Contains(res.Stderr, "network driver slirp4netns is down") {
		t.Errorf("exit %d, stderr %q; want the command's own 7 and the loss logged", res.Code, res.Stderr)
	}
}

// The slirp4netns port driver's ports come back when slirp4netns is
// restarted, under the ids clients know, and the health block counts the
// restart.
func TestSlirp4netnsRestartRepublishesPorts(t *testing.T) {
	t.Parallel()
	srv := ptServer(t)
	ps := ptPorts(t, 3)
	state, _, cmd, wait := lcStart(t, "rootlesskit", "--net=slirp4netns", "--port-driver=slirp4netns",
		fmt.Sprintf("-p=127.0.0.1:%d:8000/tcp", ps[0]), "--", srv, "-http", "0.0.0.0:8000")
	if addr := ptAddr("127.0.0.1", ps[0]); !ptWaitCurl(t, addr) {
		t.Fatalf("%s never answered", addr)
	}
	sock := filepath.Join(state, "api.sock")
	ctl := func(args ...string) Result {
		return RunUser(t, 10*time.Second, "rootlessctl", append([]string{"--socket", sock}, args...)...)
	}
	if r := ctl("add-ports", fmt.Sprintf("127.0.0.1:%d:8000/tcp", ps[1])); r.Code != 0 {
		t.Fatalf("add-ports: %s", r.Stderr)
	}
	// Remove the first so that the ids have a gap a restarted slirp4netns
	// would not reproduce.
	if r := ctl("remove-ports", "1"); r.Code != 0 {
		t.Fatalf("remove-ports 1: %s", r.Stderr)
	}
	killHelper(t, cmd.Process.Pid, "slirp4netns")
	h := waitHealth(t, state, func(h api.NetworkHealth) bool { return h.Restarts == 1 && h.State == "up" })
	if !strings.Contains(h.LastError, "slirp4netns exited") {
		t.Errorf("health = %+v, want the loss as last error", h)
	}
	ptMustCurl(t, ptAddr("127.0.0.1", ps[1]), "", "10.0.2.2:")
	if r := ctl("add-ports", fmt.Sprintf("127.0.0.1:%d:8000/tcp", ps[2])); r.Code != 0 || strings.TrimSpace(r.Stdout) != "3" {
		t.Errorf("add-ports after the restart: exit %d, id %q, want 3: %s", r.Code, r.Stdout, r.Stderr)
	}
	ptMustCurl(t, ptAddr("127.0.0.1", ps[2]), "", "10.0.2.2:")
	// Clients keep the ids they got: 2 for the port added before.
	r := ctl("list-ports")
	want := map[string]string{"2": fmt.Sprint(ps[1]), "3": fmt.Sprint(ps[2])}
	for _, line := range strings.Split(strings.TrimSpace(r.Stdout), "\n")[1:] {
		if f := strings.Fields(line); len(f) < 4 || want[f[0]] != f[3] {
			t.Errorf("list-ports line %q, want ids %v", line, want)
		}
	}
	if n := strings.Count(strings.TrimSpace(r.Stdout), "\n"); n != 2 {
		t.Errorf("list-ports after the restart:\n%s", r.Stdout)
	}
	if r := ctl("remove-ports", "2"); r.Code != 0 {
		t.Errorf("remove-ports 2 after the restart: %s", r.Stderr)
	}
	if _, err := ptCurl(t, ptAddr("127.0.0.1", ps[1]), ""); err == nil {
		t.Error("port 2 answers after its removal")
	}
	ptMustCurl(t, ptAddr("127.0.0.1", ps[2]), "", "10.0.2.2:")
	syscall.Kill(cmd.Process.Pid, syscall.SIGTERM)
	wait()
}
