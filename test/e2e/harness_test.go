// Package e2e runs the built unroot binary as an unprivileged user with
// subordinate ids, against real newuidmap, slirp4netns, pasta and clients.
//
// The tests need root (to switch to the test user and to make test-only
// network namespaces). Outside CI they skip with the reason when not root;
// in CI (CI=true) a missing prerequisite is a failure, never a skip.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/unroot/unroot/internal/testutil"
)

// Bin is the directory holding the built binaries (unroot and its
// rootlesskit/rootlessctl links), world-readable so the test user can run them.
var Bin string

var testUser *user.User

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if os.Getuid() != 0 {
		if testutil.InCI() {
			fmt.Fprintln(os.Stderr, "e2e: CI must run these tests as root (scripts/test.sh does)")
			return 1
		}
		fmt.Fprintln(os.Stderr, "e2e: skipping: needs root to run the binary as the unprivileged test user; run scripts/test.sh as root")
		return 0
	}
	name := os.Getenv("UNROOT_TEST_USER")
	if name == "" {
		name = "unroot-test"
	}
	u, err := user.Lookup(name)
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: test user %q: %v (scripts/test.sh creates it)\n", name, err)
		return 1
	}
	testUser = u
	dir, err := os.MkdirTemp("", "unroot-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	out, err := exec.Command("go", "build", "-o", filepath.Join(dir, "unroot"), "../../cmd/unroot").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: build: %v\n%s", err, out)
		return 1
	}
	for _, alias := range []string{"rootlesskit", "rootlessctl", "rootlesskit-docker-proxy"} {
		if err := os.Symlink("unroot", filepath.Join(dir, alias)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	Bin = dir
	return m.Run()
}

// UID and GID of the test user.
func testIDs(t testing.TB) (int, int) {
	t.Helper()
	uid, _ := strconv.Atoi(testUser.Uid)
	gid, _ := strconv.Atoi(testUser.Gid)
	return uid, gid
}

// TempDir returns a directory owned by the test user, removed at the end of the test.
func TempDir(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp("", "unroot-e2e")
	if err != nil {
		t.Fatal(err)
	}
	uid, gid := testIDs(t)
	if err := os.Chown(d, uid, gid); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(d, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// UserCmd builds a command that runs as the test user with Bin first in PATH.
// name may be "unroot", "rootlesskit", "rootlessctl" or any program in PATH.
func UserCmd(t testing.TB, ctx context.Context, name string, args ...string) *exec.Cmd {
	t.Helper()
	uid, gid := testIDs(t)
	path := name
	if p := filepath.Join(Bin, name); fileExists(p) {
		path = p
	}
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)},
		Setpgid:    true,
	}
	cmd.Dir = testUser.HomeDir
	runtimeDir := fmt.Sprintf("/tmp/unroot-e2e-run-%d", uid)
	_ = os.MkdirAll(runtimeDir, 0o700)
	_ = os.Chown(runtimeDir, uid, gid)
	cmd.Env = []string{
		"PATH=" + Bin + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=" + testUser.HomeDir,
		"USER=" + testUser.Username,
		"LOGNAME=" + testUser.Username,
		"XDG_RUNTIME_DIR=" + runtimeDir,
		"TMPDIR=/tmp",
		"LANG=C.UTF-8",
	}
	// Kill the whole process group if the test is cancelled.
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// Result of a finished command.
type Result struct {
	Stdout, Stderr string
	Code           int
}

// Run runs cmd to completion (bounded by ctx) and returns its output and exit code.
func Run(t testing.TB, cmd *exec.Cmd) Result {
	t.Helper()
	var so, se bytes.Buffer
	if cmd.Stdout == nil {
		cmd.Stdout = &so
	}
	if cmd.Stderr == nil {
		cmd.Stderr = &se
	}
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("%s: %v\nstderr: %s", strings.Join(cmd.Args, " "), err, se.String())
		}
		code = ee.ExitCode()
	}
	return Result{Stdout: so.String(), Stderr: se.String(), Code: code}
}

// RunUser runs a command as the test user with a timeout and returns its result.
func RunUser(t testing.TB, timeout time.Duration, name string, args ...string) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return Run(t, UserCmd(t, ctx, name, args...))
}

// WaitFile waits until path exists or the timeout passes.
func WaitFile(t testing.TB, path string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if fileExists(path) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s did not appear within %v", path, timeout)
}

func fileExists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// UserProcesses lists the pids of processes owned by the test user, for leak checks.
func UserProcesses(t testing.TB) []string {
	t.Helper()
	out, _ := exec.Command("pgrep", "-u", testUser.Uid).Output()
	return strings.Fields(string(out))
}
