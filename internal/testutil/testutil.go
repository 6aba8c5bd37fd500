// Package testutil holds the rules every test package shares: when a test
// that cannot run here skips and when it fails (Unavailable and the
// Require helpers), and a TestMain that fails a package whose tests leave
// goroutines or descriptors behind (Main).
package testutil

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"testing"

	"github.com/unroot/unroot/doctor"
)

// InCI reports whether the tests run in CI (CI set), where every test must
// run: scripts/test.sh installs what they need and runs them as root.
func InCI() bool { return os.Getenv("CI") != "" }

// Unavailable ends a test that cannot run on this machine, for the reason
// given: outside CI it skips and prints why; in CI it fails, because CI is
// set up to run everything.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if InCI() {
		t.Fatalf("%s; CI must run this test (scripts/test.sh sets it up)", msg)
	}
	t.Skipf("skipping: %s", msg)
}

// RequireRoot ends the test through Unavailable unless it runs as root;
// why says what root is needed for.
func RequireRoot(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		Unavailable(t, "needs root to %s; run as root or via scripts/test.sh", why)
	}
}

// RequireTool returns the path of a program the test runs, or ends the
// test through Unavailable naming the package that has it.
func RequireTool(t testing.TB, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Unavailable(t, "%s is not installed (apt-get install %s): %v", name, pkg, err)
	}
	return p
}

// RequireUserNS ends the test through Unavailable unless this process can
// create user namespaces, as the doctor's userns check finds out; the
// reason is the check's.
func RequireUserNS(t testing.TB) {
	t.Helper()
	r := doctor.Run(context.Background(), doctor.Select(doctor.Options{}, doctor.CheckUserNS)...)
	if len(r) == 1 && r[0].Status == doctor.Fail {
		Unavailable(t, "user namespaces are unavailable here: %s", r[0].Detail)
	}
}
