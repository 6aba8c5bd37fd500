// Package procfs holds pure parsers for the text files and tool outputs the
// launcher reads: /etc/subuid and /etc/subgid, getsubids output, and
// /proc/PID/uid_map. Reading the files is left to callers so that every
// parser can be table-tested and fuzzed on literal input.
package procfs

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Range is a subordinate id range: Count ids starting at Start.
type Range struct {
	Start uint32
	Count uint32
}

// Mapping is one line of /proc/PID/uid_map or gid_map.
type Mapping struct {
	Inside  uint32
	Outside uint32
	Count   uint32
}

// ParseSubID returns the ranges of /etc/subuid (or /etc/subgid) content that
// belong to the user, matched by name or by numeric id, in file order.
// Malformed lines are skipped, as shadow's own tools skip them; duplicates
// are dropped.
func ParseSubID(r io.Reader, name string, id uint32) ([]Range, error) {
	idStr := strconv.FormatUint(uint64(id), 10)
	var out []Range
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Split(line, ":")
		if len(f) != 3 {
			continue
		}
		if f[0] != idStr && (name == "" || f[0] != name) {
			continue
		}
		rg, ok := parseRange(f[1], f[2])
		if !ok {
			continue
		}
		out = appendUnique(out, rg)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read subordinate id file: %w", err)
	}
	return out, nil
}

// ParseGetsubids parses the output of shadow's getsubids(1):
// lines like "0: alice 100000 65536". Lines that do not have that shape are
// an error, because they mean the tool is not the one we expect.
func ParseGetsubids(out string) ([]Range, error) {
	var rs []Range
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		idx, rest, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("parse getsubids output %q: want \"N: USER START COUNT\"", line)
		}
		if _, err := strconv.ParseUint(strings.TrimSpace(idx), 10, 32); err != nil {
			return nil, fmt.Errorf("parse getsubids output %q: want \"N: USER START COUNT\"", line)
		}
		f := strings.Fields(rest)
		if len(f) != 3 {
			return nil, fmt.Errorf("parse getsubids output %q: want \"N: USER START COUNT\"", line)
		}
		rg, ok := parseRange(f[1], f[2])
		if !ok {
			return nil, fmt.Errorf("parse getsubids output %q: bad start or count", line)
		}
		rs = appendUnique(rs, rg)
	}
	return rs, nil
}

// ParseIDMap parses /proc/PID/uid_map or gid_map content.
func ParseIDMap(s string) ([]Mapping, error) {
	var ms []Mapping
	for _, line := range strings.Split(s, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) != 3 {
			return nil, fmt.Errorf("parse id map line %q: want 3 fields", line)
		}
		var v [3]uint32
		for i := range f {
			n, err := strconv.ParseUint(f[i], 10, 32)
			if err != nil {
				return nil, fmt.Errorf("parse id map line %q: %w", line, err)
			}
			v[i] = uint32(n)
		}
		ms = append(ms, Mapping{Inside: v[0], Outside: v[1], Count: v[2]})
	}
	return ms, nil
}

func parseRange(start, count string) (Range, bool) {
	s, err := strconv.ParseUint(start, 10, 32)
	if err != nil {
		return Range{}, false
	}
	c, err := strconv.ParseUint(count, 10, 32)
	if err != nil || c == 0 || s+c-1 > 0xFFFFFFFF {
		return Range{}, false
	}
	return Range{Start: uint32(s), Count: uint32(c)}, true
}

func appendUnique(rs []Range, r Range) []Range {
	for _, x := range rs {
		if x == r {
			return rs
		}
	}
	return append(rs, r)
}
