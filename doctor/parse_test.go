package doctor

import (
	"encoding/binary"
	"reflect"
	"testing"
)

func TestParseSysctlInt(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"96365\n", 96365, true},
		{"0", 0, true},
		{" 1 \n", 1, true},
		{"", 0, false},
		{"abc", 0, false},
		{"1 0", 0, false},
	} {
		got, err := parseSysctlInt(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseSysctlInt(%q) = %d, %v; want %d, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestParsePingGroupRange(t *testing.T) {
	for _, tc := range []struct {
		in     string
		lo, hi int64
		ok     bool
	}{
		{"1\t0\n", 1, 0, true},
		{"0 2147483647", 0, 2147483647, true},
		{"1", 0, 0, false},
		{"a b", 0, 0, false},
		{"", 0, 0, false},
	} {
		lo, hi, err := parsePingGroupRange(tc.in)
		if (err == nil) != tc.ok || lo != tc.lo || hi != tc.hi {
			t.Errorf("parsePingGroupRange(%q) = %d %d %v; want %d %d ok=%v", tc.in, lo, hi, err, tc.lo, tc.hi, tc.ok)
		}
	}
}

func TestParseSubIDFile(t *testing.T) {
	file := "# comment\nalice:100000:65536\n\nbob:165536:65536\n1001:300000:1000\nbroken\nalice:x:1\nalice:500000:0\ncarol:231072:65536:extra\nalice:100000:65536\n"
	for _, tc := range []struct {
		name string
		uid  uint32
		mine []idRange
	}{
		{"alice", 1000, []idRange{{100000, 65536}}},
		{"bob", 1002, []idRange{{165536, 65536}}},
		{"dave", 1001, []idRange{{300000, 1000}}},
		{"nobody", 65534, nil},
	} {
		mine, all, err := parseSubIDFile(file, tc.name, tc.uid)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(mine, tc.mine) {
			t.Errorf("parseSubIDFile(%s) mine = %v, want %v", tc.name, mine, tc.mine)
		}
		if len(all) != 4 {
			t.Errorf("parseSubIDFile all = %v, want 4 valid ranges", all)
		}
	}
	if mine, all, err := parseSubIDFile("", "a", 1); mine != nil || all != nil || err != nil {
		t.Errorf("empty file: got %v %v %v, want nothing", mine, all, err)
	}
}

func TestParseGetsubids(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []idRange
		ok   bool
	}{
		{"0: alice 100000 65536\n", []idRange{{100000, 65536}}, true},
		{"0: alice 100000 65536\n1: alice 300000 10\n", []idRange{{100000, 65536}, {300000, 10}}, true},
		{"", nil, true},
		{"Error fetching ranges", nil, false},
		{"0: alice 100000", nil, false},
		{"0 alice 1 2", nil, false},
		{"0: alice 1 0", nil, false},
		{"0: alice -1 2", nil, false},
	} {
		got, err := parseGetsubids(tc.in)
		if (err == nil) != tc.ok || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("parseGetsubids(%q) = %v, %v; want %v ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestFreeSubIDStart(t *testing.T) {
	for _, tc := range []struct {
		used []idRange
		want uint64
	}{
		{nil, 100000},
		{[]idRange{{100000, 65536}}, 196608},
		{[]idRange{{100000, 65536}, {200000, 65536}}, 327680},
		{[]idRange{{10, 10}}, 100000},
	} {
		if got := freeSubIDStart(tc.used); got != tc.want {
			t.Errorf("freeSubIDStart(%v) = %d, want %d", tc.used, got, tc.want)
		}
	}
}

func TestParseOSRelease(t *testing.T) {
	m := parseOSRelease("PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\n# c\nID_LIKE='rhel fedora'\nbad\n=x\nVERSION_ID=\"12\"\n")
	want := map[string]string{"PRETTY_NAME": "Debian GNU/Linux 12 (bookworm)", "ID": "debian", "ID_LIKE": "rhel fedora", "VERSION_ID": "12"}
	if !reflect.DeepEqual(m, want) {
		t.Errorf("parseOSRelease = %v, want %v", m, want)
	}
}

func vfsCap(magic uint32, words ...uint32) []byte {
	b := binary.LittleEndian.AppendUint32(nil, magic)
	for _, w := range words {
		b = binary.LittleEndian.AppendUint32(b, w)
	}
	return b
}

func TestParseVFSCap(t *testing.T) {
	for _, tc := range []struct {
		name   string
		in     []byte
		setuid bool
		eff    bool
		ok     bool
	}{
		{"v2 cap_setuid+ep", vfsCap(0x02000001, 1<<capSetuid, 0, 0, 0), true, true, true},
		{"v3 cap_setgid+ep", vfsCap(0x03000001, 1<<capSetgid, 0, 0, 0, 0), false, true, true},
		{"v2 high word only", vfsCap(0x02000000, 0, 0, 1, 0), false, false, true},
		{"v1", vfsCap(0x01000000, 1<<capSetuid, 0), true, false, true},
		{"v3 short", vfsCap(0x03000001, 1<<capSetuid, 0, 0, 0), false, false, false},
		{"unknown revision", vfsCap(0x05000000, 0, 0, 0, 0), false, false, false},
		{"empty", nil, false, false, false},
	} {
		c, err := parseVFSCap(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("%s: err = %v, want ok=%v", tc.name, err, tc.ok)
			continue
		}
		if c.has(capSetuid) != tc.setuid || c.Effective != tc.eff {
			t.Errorf("%s: got %+v, want setuid=%v effective=%v", tc.name, c, tc.setuid, tc.eff)
		}
	}
}

func TestParseVersion(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"slirp4netns version 1.2.0\ncommit: 656041d\n", "1.2.0"},
		{"pasta 0^20230509.g96f8d55-1\nCopyright Red Hat\n", "0^20230509.g96f8d55-1"},
		{"pasta unknown version\n", "unknown"},
		{"", "unknown"},
		{"x", "unknown"},
	} {
		if got := parseVersion(tc.in); got != tc.want {
			t.Errorf("parseVersion(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func FuzzParseSubIDFile(f *testing.F) {
	f.Add("alice:100000:65536\n#x\nbob:1:2:3\n", "alice", uint32(1000))
	f.Add("", "", uint32(0))
	f.Fuzz(func(t *testing.T, s, name string, uid uint32) {
		mine, all, err := parseSubIDFile(s, name, uid)
		if err != nil {
			if mine != nil || all != nil {
				t.Fatalf("ranges %v %v returned with error %v", mine, all, err)
			}
			return
		}
		if len(mine) > len(all) {
			t.Fatalf("more own ranges (%d) than ranges (%d)", len(mine), len(all))
		}
		for _, r := range all {
			if r.Count == 0 {
				t.Fatalf("zero-length range %v accepted", r)
			}
		}
		if start := freeSubIDStart(all); start < 100000 {
			t.Fatalf("free start %d below 100000", start)
		}
	})
}

func FuzzParseGetsubids(f *testing.F) {
	f.Add("0: alice 100000 65536\n")
	f.Add("Error fetching ranges\n")
	f.Fuzz(func(t *testing.T, s string) {
		rs, err := parseGetsubids(s)
		if err != nil && rs != nil {
			t.Fatalf("ranges %v returned with error %v", rs, err)
		}
		for _, r := range rs {
			if r.Count == 0 {
				t.Fatalf("zero-length range accepted from %q", s)
			}
		}
	})
}

func FuzzParseSysctl(f *testing.F) {
	f.Add("96365\n")
	f.Add("1\t0\n")
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = parseSysctlInt(s)
		lo, hi, err := parsePingGroupRange(s)
		if err != nil && (lo != 0 || hi != 0) {
			t.Fatalf("values %d %d returned with error", lo, hi)
		}
	})
}

func FuzzParseOSRelease(f *testing.F) {
	f.Add("ID=debian\nID_LIKE=\"ubuntu debian\"\n")
	f.Fuzz(func(t *testing.T, s string) {
		for k := range parseOSRelease(s) {
			if k == "" {
				t.Fatal("empty key")
			}
		}
	})
}

func FuzzParseVFSCap(f *testing.F) {
	f.Add(vfsCap(0x02000001, 1<<capSetuid, 0, 0, 0))
	f.Add(vfsCap(0x03000001, 1, 0, 0, 0, 0))
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := parseVFSCap(b)
		if err != nil && c != (fileCaps{}) {
			t.Fatalf("caps %+v returned with error %v", c, err)
		}
	})
}

func FuzzParseVersion(f *testing.F) {
	f.Add("slirp4netns version 1.2.0\n")
	f.Fuzz(func(t *testing.T, s string) {
		if parseVersion(s) == "" {
			t.Fatalf("empty version for %q", s)
		}
	})
}
