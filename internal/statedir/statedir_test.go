package statedir

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLifecycle(t *testing.T) {
	root := t.TempDir()
	path := filepath.Join(root, "a", "state")
	d, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("state dir mode = %v, %v; want 0755", fi.Mode().Perm(), err)
	}
	if _, err := Open(path); err == nil || !strings.Contains(err.Error(), "another RootlessKit is running with the same state directory?") {
		t.Errorf("second Open = %v, want the lock conflict error", err)
	}
	if err := d.WriteChildPID(1234); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(d.Join(ChildPID))
	if err != nil || string(b) != "1234" {
		t.Errorf("child_pid = %q, %v; want \"1234\"", b, err)
	}
	if fi, _ := os.Stat(d.Join(ChildPID)); fi.Mode().Perm() != 0o444 {
		t.Errorf("child_pid mode = %v, want 0444", fi.Mode().Perm())
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("state dir still there after Close: %v", err)
	}
}

func TestStaleWiped(t *testing.T) {
	path := t.TempDir()
	for _, n := range []string{"api.sock", ChildPID, ".bp-ready.pipe"} {
		os.WriteFile(filepath.Join(path, n), []byte("x"), 0o400)
	}
	os.Mkdir(filepath.Join(path, "sub"), 0o700)
	d, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ents, _ := os.ReadDir(path)
	if len(ents) != 1 || ents[0].Name() != Lock {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("after Open: %v, want only lock", names)
	}
}

func TestTemp(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	d, err := Open("")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if !strings.HasPrefix(filepath.Base(d.Path()), "rootlesskit") {
		t.Errorf("temp dir %s, want rootlesskitNNN", d.Path())
	}
	if fi, _ := os.Stat(d.Path()); fi.Mode().Perm() != 0o700 {
		t.Errorf("temp dir mode %v, want 0700", fi.Mode().Perm())
	}
}
