package procfs

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseSubID(t *testing.T) {
	tests := []struct {
		name, in string
		user     string
		id       uint32
		want     []Range
	}{
		{"by name", "alice:100000:65536\nbob:165536:65536\n", "alice", 1000, []Range{{100000, 65536}}},
		{"by id", "1000:100000:65536\n", "alice", 1000, []Range{{100000, 65536}}},
		{"several", "alice:100000:65536\n# c\n\nalice:300000:10\n", "alice", 1000, []Range{{100000, 65536}, {300000, 10}}},
		{"dedup", "alice:1:2\n1000:1:2\n", "alice", 1000, []Range{{1, 2}}},
		{"malformed skipped", "alice:x:1\nalice:1\nalice:5:0\nalice:7:3\n", "alice", 1000, []Range{{7, 3}}},
		{"overflow skipped", "alice:4294967295:2\n", "alice", 1000, nil},
		{"none", "bob:1:2\n", "alice", 1000, nil},
		{"empty name matches id only", "alice:1:2\n", "", 1000, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseSubID(strings.NewReader(tt.in), tt.user, tt.id)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestParseSubIDFile(t *testing.T) {
	tests := []struct {
		name, in string
		want     []SubIDEntry
	}{
		{"empty", "", nil},
		{"every owner, in order", "bob:165536:65536\nalice:100000:65536\n1001:300000:1000\n",
			[]SubIDEntry{{"bob", Range{165536, 65536}}, {"alice", Range{100000, 65536}}, {"1001", Range{300000, 1000}}}},
		{"duplicates kept", "alice:1:2\nalice:1:2\n", []SubIDEntry{{"alice", Range{1, 2}}, {"alice", Range{1, 2}}}},
		{"comments, blanks and spaces around lines", "# c\n\n  alice:1:2  \n", []SubIDEntry{{"alice", Range{1, 2}}}},
		{"empty owner kept", ":1:2\n", []SubIDEntry{{"", Range{1, 2}}}},
		{"malformed skipped", "broken\nalice:1\nalice:1:2:3\nalice:x:1\nalice:1:x\nalice:5:0\nalice:-1:2\nalice:4294967296:1\nalice:4294967295:2\nalice:4294967295:1\n",
			[]SubIDEntry{{"alice", Range{4294967295, 1}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseSubIDFile(strings.NewReader(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
	if _, err := ParseSubIDFile(strings.NewReader("alice:" + strings.Repeat("1", 1<<20) + ":1\n")); err == nil {
		t.Error("line over 1 MiB: got no error, want one")
	}
}

func TestParseGetsubids(t *testing.T) {
	tests := []struct {
		in      string
		want    []Range
		wantErr bool
	}{
		{"0: alice 100000 65536\n", []Range{{100000, 65536}}, false},
		{"0: alice 100000 65536\n1: alice 200000 10\n", []Range{{100000, 65536}, {200000, 10}}, false},
		{"", nil, false},
		{"Error: no subuid ranges\n", nil, true},
		{"0: alice 100000\n", nil, true},
		{"x: alice 1 2\n", nil, true},
		{"0: alice 1 0\n", nil, true},
	}
	for _, tt := range tests {
		got, err := ParseGetsubids(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("ParseGetsubids(%q) err = %v, wantErr %v", tt.in, err, tt.wantErr)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseGetsubids(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestParseIDMap(t *testing.T) {
	got, err := ParseIDMap("         0       1001          1\n         1     100000      65536\n")
	if err != nil {
		t.Fatal(err)
	}
	want := []Mapping{{0, 1001, 1}, {1, 100000, 65536}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	for _, bad := range []string{"0 1", "a b c", "0 0 4294967296"} {
		if _, err := ParseIDMap(bad); err == nil {
			t.Errorf("ParseIDMap(%q) = nil error, want one", bad)
		}
	}
	if m, err := ParseIDMap(""); err != nil || m != nil {
		t.Errorf("ParseIDMap(\"\") = %v, %v; want nil, nil", m, err)
	}
}

func FuzzParseSubID(f *testing.F) {
	f.Add("alice:100000:65536\n1000:1:2\n", "alice")
	f.Add("#x\n::\n", "")
	f.Fuzz(func(t *testing.T, in, user string) {
		rs, err := ParseSubID(strings.NewReader(in), user, 1000)
		entries, ferr := ParseSubIDFile(strings.NewReader(in))
		if (err == nil) != (ferr == nil) {
			t.Fatalf("ParseSubID err %v, ParseSubIDFile err %v", err, ferr)
		}
		if err != nil {
			return
		}
		all := map[Range]bool{}
		for _, e := range entries {
			if strings.Contains(e.Owner, ":") {
				t.Fatalf("owner %q with a colon from %q", e.Owner, in)
			}
			all[e.Range] = true
		}
		for _, r := range rs {
			if r.Count == 0 || uint64(r.Start)+uint64(r.Count)-1 > 0xFFFFFFFF {
				t.Fatalf("invalid range %v from %q", r, in)
			}
			if !all[r] {
				t.Fatalf("range %v of %q is not among the file's entries %v", r, user, entries)
			}
		}
	})
}

func FuzzParseGetsubids(f *testing.F) {
	f.Add("0: alice 100000 65536\n")
	f.Add("garbage")
	f.Fuzz(func(t *testing.T, in string) {
		rs, err := ParseGetsubids(in)
		if err != nil {
			return
		}
		for _, r := range rs {
			if r.Count == 0 {
				t.Fatalf("zero-length range from %q", in)
			}
		}
	})
}

func FuzzParseIDMap(f *testing.F) {
	f.Add("0 1001 1\n1 100000 65536\n")
	f.Fuzz(func(t *testing.T, in string) {
		ms, err := ParseIDMap(in)
		if err != nil {
			return
		}
		if len(ms) > strings.Count(in, "\n")+1 {
			t.Fatalf("%d mappings from %d lines", len(ms), strings.Count(in, "\n")+1)
		}
	})
}

func TestFreeSubIDStart(t *testing.T) {
	for _, tc := range []struct {
		used [][]Range
		want uint64
	}{
		{nil, 100000},
		{[][]Range{{{100000, 65536}}}, 196608},
		{[][]Range{{{100000, 65536}}, {{200000, 65536}}}, 327680},
		{[][]Range{{{10, 10}}}, 100000},
		{[][]Range{{{4294901760, 65535}}}, 4294967296},
	} {
		if got := FreeSubIDStart(tc.used...); got != tc.want {
			t.Errorf("FreeSubIDStart(%v) = %d, want %d", tc.used, got, tc.want)
		}
	}
}

func TestParseCgroup2(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string
		ok   bool
	}{
		{"0::/user.slice/user-1000.slice/user@1000.service/app.slice/x.scope\n", "/user.slice/user-1000.slice/user@1000.service/app.slice/x.scope", true},
		{"12:pids:/x\n1:name=systemd:/y\n0::/z\n", "/z", true},
		{"9:name=systemd:/\n4:memory:/a\n0::/\n", "/", true},
		{"0::/a \n", "/a", true},
		{"4:memory:/a\n", "", false},
		{"0::relative", "", false},
		{"0::\n", "", false},
		{"", "", false},
	} {
		got, ok := ParseCgroup2(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("ParseCgroup2(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func FuzzParseCgroup2(f *testing.F) {
	f.Add("0::/user.slice\n")
	f.Add("1:cpu:/\n0::\n")
	f.Fuzz(func(t *testing.T, s string) {
		p, ok := ParseCgroup2(s)
		if ok && (len(p) == 0 || p[0] != '/' || len(p) > len(s)) {
			t.Fatalf("ParseCgroup2(%q) = %q", s, p)
		}
	})
}
