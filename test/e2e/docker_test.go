package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/unroot/unroot/internal/testutil"
)

// dockerRootless runs Debian's docker.io rootless, through its unchanged
// dockerd-rootless.sh with unroot first in PATH as rootlesskit, as the
// test user: it imports a busybox image whose httpd serves greeting, runs
// it as container "web" with -p port:80, curls it from the host, then runs
// extra (shell lines; $LOG is dockerd's log) before it removes "web".
// rkFlags, when not "", is DOCKERD_ROOTLESS_ROOTLESSKIT_FLAGS.
func dockerRootless(t *testing.T, greeting, rkFlags string, port int, extra string) Result {
	t.Helper()
	const script = "/usr/share/docker.io/contrib/dockerd-rootless.sh"
	for _, p := range []string{script, "/usr/sbin/dockerd", "/usr/bin/docker", "/bin/busybox"} {
		if !fileExists(p) {
			testutil.Unavailable(t, "%s is missing (apt-get install docker.io busybox-static; scripts/apt-packages.txt lists them)", p)
		}
	}
	dir := TempDir(t)
	root := filepath.Join(dir, "rootfs")
	for _, d := range []string{"bin", "www"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command("cp", "/bin/busybox", filepath.Join(root, "bin/busybox")).CombinedOutput(); err != nil {
		t.Fatalf("cp busybox: %v: %s", err, out)
	}
	os.Symlink("busybox", filepath.Join(root, "bin/httpd"))
	os.Symlink("busybox", filepath.Join(root, "bin/sh"))
	os.WriteFile(filepath.Join(root, "www/index.html"), []byte(greeting+"\n"), 0o644)
	image := filepath.Join(dir, "busybox.tar")
	if out, err := exec.Command("tar", "-C", root, "-cf", image, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v: %s", err, out)
	}
	os.Chmod(image, 0o644)
	run := filepath.Join(dir, "run")
	flags := ""
	if rkFlags != "" {
		flags = fmt.Sprintf(" DOCKERD_ROOTLESS_ROOTLESSKIT_FLAGS=%q", rkFlags)
	}
	body := fmt.Sprintf(`set -u
export XDG_RUNTIME_DIR=%[1]s DOCKER_HOST=unix://%[1]s/docker.sock%[6]s
LOG=%[3]s/dockerd.log
mkdir -m 700 -p "$XDG_RUNTIME_DIR"
%[2]s --data-root %[3]s/data >"$LOG" 2>&1 &
d=$!
trap 'kill $d 2>/dev/null; wait $d' EXIT
i=0; until docker version >/dev/null 2>&1; do i=$((i+1)); [ $i -gt 600 ] && { echo "dockerd did not start"; cat "$LOG"; exit 1; }; sleep 0.1; done
docker import %[4]s bb:latest >/dev/null || exit 1
docker run -d --name web -p %[5]d:80 bb:latest httpd -f -p 80 -h /www >/dev/null || { cat "$LOG"; exit 1; }
i=0; until curl -fsS --max-time 2 http://127.0.0.1:%[5]d/; do i=$((i+1)); [ $i -gt 50 ] && { cat "$LOG"; exit 1; }; sleep 0.2; done
%[7]s
docker rm -f web >/dev/null
`, run, script, dir, image, port, flags, extra)
	return RunUser(t, 120*time.Second, "sh", "-c", body)
}
