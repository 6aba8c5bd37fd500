// Package testutil holds the rules every test package shares: when a test
// that cannot run here skips and when it fails (Unavailable and the
// Require helpers), and a TestMain that fails a package whose tests leave
// goroutines or descriptors behind (Main). The user-namespace requirement,
// which asks the doctor, is internal/testutil/userns.
package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
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
