package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// goBinary is a program of this repository that tests run as the test
// user: built once per test binary into Bin, which that user can read.
type goBinary struct {
	name string   // path under Bin
	pkg  string   // package, relative to test/e2e
	env  []string // added to go build's environment

	once sync.Once
	err  error
}

// path builds the program on first use and returns where it is; a failed
// build fails t.
func (b *goBinary) path(t *testing.T) string {
	t.Helper()
	p := filepath.Join(Bin, b.name)
	b.once.Do(func() {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			b.err = err
			return
		}
		cmd := exec.Command("go", "build", "-o", p, b.pkg)
		cmd.Env = append(os.Environ(), b.env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("build %s: %v: %s", b.pkg, err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return p
}
