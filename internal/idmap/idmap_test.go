package idmap

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/unroot/unroot/internal/procfs"
)

func TestArgs(t *testing.T) {
	tests := []struct {
		self   uint32
		ranges []procfs.Range
		want   string
	}{
		{1001, nil, "0 1001 1"},
		{1001, []procfs.Range{{Start: 100000, Count: 65536}}, "0 1001 1 1 100000 65536"},
		{1001, []procfs.Range{{Start: 100000, Count: 65536}, {Start: 300000, Count: 10}}, "0 1001 1 1 100000 65536 65537 300000 10"},
	}
	for _, tt := range tests {
		if got := strings.Join(Args(tt.self, tt.ranges), " "); got != tt.want {
			t.Errorf("Args(%d, %v) = %q, want %q", tt.self, tt.ranges, got, tt.want)
		}
	}
}

func TestParseSource(t *testing.T) {
	for in, want := range map[string]Source{"": SourceAuto, "auto": SourceAuto, "dynamic": SourceDynamic, "static": SourceStatic} {
		if got, err := ParseSource(in); err != nil || got != want {
			t.Errorf("ParseSource(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := ParseSource("ldap"); err == nil {
		t.Error("ParseSource(ldap) = nil error")
	}
}

func TestLookupStatic(t *testing.T) {
	dir := t.TempDir()
	oldU, oldG := SubUIDFile, SubGIDFile
	t.Cleanup(func() { SubUIDFile, SubGIDFile = oldU, oldG })
	SubUIDFile, SubGIDFile = filepath.Join(dir, "subuid"), filepath.Join(dir, "subgid")
	os.WriteFile(SubUIDFile, []byte("alice:100000:65536\n"), 0o644)
	os.WriteFile(SubGIDFile, []byte("1000:200000:65536\n"), 0o644)
	p, err := Lookup(context.Background(), SourceStatic, Identity{Name: "alice", UID: 1000, GID: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(p.UIDRanges, []procfs.Range{{Start: 100000, Count: 65536}}) || !reflect.DeepEqual(p.GIDRanges, []procfs.Range{{Start: 200000, Count: 65536}}) || p.Warning != "" {
		t.Errorf("got %+v", p)
	}
	if !p.NeedsHelpers() {
		t.Error("NeedsHelpers = false with ranges")
	}
	p, err = Lookup(context.Background(), SourceStatic, Identity{Name: "bob", UID: 1001, GID: 1001})
	if err != nil {
		t.Fatal(err)
	}
	// The fix names a range nobody holds: above alice's uids and the
	// gids at 200000-265535, aligned as useradd does.
	if want := "sudo usermod --add-subuids 327680-393215 --add-subgids 327680-393215 bob"; p.Warning == "" || !strings.Contains(p.Warning, want) || p.NeedsHelpers() {
		t.Errorf("no ranges: got %+v, want a warning with the fix %q and no helpers", p, want)
	}
	p, err = Lookup(context.Background(), SourceStatic, Identity{Name: "root", UID: 0})
	if err != nil || p.NeedsHelpers() || p.Warning != "" {
		t.Errorf("root: got %+v, %v", p, err)
	}
}

func TestHasSubidService(t *testing.T) {
	tests := map[string]bool{
		"":                                 false,
		"passwd: files\ngroup: files\n":    false,
		"subid: files\n":                   false,
		"subid: sss\n":                     true,
		"subid:   files sss\n":             true,
		"# subid: sss\npasswd: files\n":    false,
		"subid: files [NOTFOUND=return]\n": false,
		"subidx: sss\n":                    false,
	}
	for in, want := range tests {
		if got := HasSubidService(in); got != want {
			t.Errorf("HasSubidService(%q) = %v, want %v", in, got, want)
		}
	}
}

func FuzzHasSubidService(f *testing.F) {
	f.Add("subid: sss\n")
	f.Fuzz(func(t *testing.T, s string) {
		if HasSubidService(s) && !strings.Contains(s, "subid") {
			t.Fatalf("true without a subid line: %q", s)
		}
	})
}
