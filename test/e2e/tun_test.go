package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A tun device the user cannot open, or none at all, fails the start with
// one cause and its fix, printed once, for every driver that needs tun.
// The device is hidden in a private mount namespace of the test's own (a
// 0600 root file bound over it, or an empty tmpfs over /dev/net); the
// host's /dev/net/tun is never touched.
func TestTunFailurePrintsFixOnce(t *testing.T) {
	t.Parallel()
	uid, gid := testIDs(t)
	denied := filepath.Join(TempDir(t), "tun-0600")
	if err := os.WriteFile(denied, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	hide := map[string]string{
		"denied":  `mount --bind "$0" /dev/net/tun`,
		"missing": `mount -t tmpfs none /dev/net`,
	}
	wantFix := map[string]string{"denied": "sudo chmod 0666 /dev/net/tun", "missing": "sudo modprobe tun"}
	for _, net := range []string{"slirp4netns", "pasta", "netstack"} {
		for kind, mount := range hide {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			cmd := UserCmd(t, ctx, "unroot", "run", "--net="+net, "true")
			// As root: a private mount namespace hides the device, then
			// the test user runs unroot there.
			args := append([]string{"-m", "--propagation", "private", "sh", "-c",
				mount + ` && exec setpriv --reuid=` + strconv.Itoa(uid) + ` --regid=` + strconv.Itoa(gid) + ` --clear-groups "$@"`, denied, cmd.Path}, cmd.Args[1:]...)
			cmd.Path, cmd.Args = "/usr/bin/unshare", append([]string{"unshare"}, args...)
			cmd.SysProcAttr.Credential = nil
			r := Run(t, cmd)
			cancel()
			if r.Code != 1 {
				t.Errorf("%s, tun %s: exit %d, want 1 (stderr %q)", net, kind, r.Code, r.Stderr)
				continue
			}
			if n := strings.Count(r.Stderr, "fix:"); n != 1 || strings.Count(r.Stderr, wantFix[kind]) != 1 {
				t.Errorf("%s, tun %s: stderr has %d fixes, want one that says %q:\n%s", net, kind, n, wantFix[kind], r.Stderr)
			}
			if !strings.HasPrefix(r.Stderr, "unroot: ") || !strings.Contains(r.Stderr, "/dev/net/tun") {
				t.Errorf("%s, tun %s: stderr does not name /dev/net/tun as the cause:\n%s", net, kind, r.Stderr)
			}
		}
	}
}
