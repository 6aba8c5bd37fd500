package statedir

import (
	"net/netip"
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

func TestNetFileContent(t *testing.T) {
	for _, tc := range []struct {
		dns  []netip.Addr
		want string
	}{
		{nil, ""},
		{[]netip.Addr{netip.MustParseAddr("10.0.2.3")}, "nameserver 10.0.2.3\n"},
		{[]netip.Addr{netip.MustParseAddr("10.0.2.3"), netip.MustParseAddr("fd00::3")}, "nameserver 10.0.2.3\nnameserver fd00::3\n"},
	} {
		if got := string(ResolvConfContent(tc.dns)); got != tc.want {
			t.Errorf("ResolvConfContent(%v) = %q, want %q", tc.dns, got, tc.want)
		}
	}
	for _, tc := range []struct{ hosts, name, want string }{
		{"127.0.0.1 localhost\n", "box", "127.0.0.1 localhost\n\n127.0.0.1 box\n::1 box\n"},
		{"", "box", "\n127.0.0.1 box\n::1 box\n"},
		{"127.0.0.1 localhost\n", "", "127.0.0.1 localhost\n"},
	} {
		if got := string(HostsContent([]byte(tc.hosts), tc.name)); got != tc.want {
			t.Errorf("HostsContent(%q, %q) = %q, want %q", tc.hosts, tc.name, got, tc.want)
		}
	}
}

func TestWriteNetFiles(t *testing.T) {
	d, err := Open(filepath.Join(t.TempDir(), "state"))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.WriteNetFiles([]netip.Addr{netip.MustParseAddr("10.0.2.3")}); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{ResolvConf: "nameserver 10.0.2.3\n", Hosts: "::1 "} {
		b, err := os.ReadFile(d.Join(name))
		if err != nil || !strings.Contains(string(b), want) {
			t.Errorf("%s = %q, %v; want it to hold %q", name, b, err, want)
		}
		if fi, err := os.Stat(d.Join(name)); err != nil || fi.Mode().Perm()&0o444 != 0o444 {
			t.Errorf("%s not world-readable: %v %v", name, fi.Mode(), err)
		}
	}
}
