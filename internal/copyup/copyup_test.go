package copyup

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/unroot/unroot/internal/testutil/userns"
)

// The copy-up runs in a helper process (this test binary re-executed) in a
// new user and mount namespace, so the host's mounts are never touched.
func TestMain(m *testing.M) {
	if dir := os.Getenv("COPYUP_TEST_DIR"); dir != "" {
		os.Exit(helper(dir))
	}
	os.Exit(m.Run())
}

func helper(dir string) int {
	if err := syscall.Mount("none", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, ""); err != nil {
		fmt.Println("private:", err)
		return 1
	}
	if err := Do(dir, ""); err != nil {
		fmt.Println("copy-up:", err)
		return 1
	}
	// Replace an entry the way dockerd-rootless.sh does, and add one.
	if err := os.Remove(filepath.Join(dir, "file")); err != nil {
		fmt.Println(err)
		return 1
	}
	os.WriteFile(filepath.Join(dir, "file"), []byte("inside"), 0o644)
	os.WriteFile(filepath.Join(dir, "new"), []byte("new"), 0o644)
	for _, n := range []string{"link", "sub"} {
		t, _ := os.Readlink(filepath.Join(dir, n))
		fmt.Printf("%s -> %s\n", n, t)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "sub", "x"))
	fmt.Printf("sub/x = %s\n", b)
	return 0
}

func TestCopyUp(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "file"), []byte("host"), 0o644)
	os.Symlink("/elsewhere", filepath.Join(dir, "link"))
	os.Mkdir(filepath.Join(dir, "sub"), 0o755)
	os.WriteFile(filepath.Join(dir, "sub", "x"), []byte("x"), 0o644)

	cmd := exec.Command("/proc/self/exe", "-test.run=^$")
	cmd.Env = append(os.Environ(), "COPYUP_TEST_DIR="+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
	}
	userns.Require(t)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	s := string(out)
	if !strings.Contains(s, "link -> /elsewhere\n") || !strings.Contains(s, "sub -> .ro") || !strings.Contains(s, "sub/x = x\n") {
		t.Errorf("layout inside:\n%s\nwant link kept as its target, sub -> .roNNN/sub, contents readable", s)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "file")); string(b) != "host" {
		t.Errorf("host file = %q after a write inside, want \"host\"", b)
	}
	if _, err := os.Stat(filepath.Join(dir, "new")); !os.IsNotExist(err) {
		t.Errorf("a file created inside appeared on the host (%v)", err)
	}
}

func TestValidate(t *testing.T) {
	for _, bad := range []string{"/tmp", "/tmp/", "/", "etc"} {
		if Validate(bad) == nil {
			t.Errorf("Validate(%q) = nil, want an error", bad)
		}
	}
	for _, ok := range []string{"/etc", "/run", "/var/lib"} {
		if err := Validate(ok); err != nil {
			t.Errorf("Validate(%q) = %v", ok, err)
		}
	}
}
