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

// SubIDEntry is one line of /etc/subuid or /etc/subgid: the range Owner
// holds. Owner is a user name or a numeric uid, as written in the file.
type SubIDEntry struct {
	Owner string
	Range
}

// ParseSubIDFile returns every well-formed entry of /etc/subuid (or
// /etc/subgid) content, in file order, duplicates included. Comments, blank
// lines and malformed lines (not three fields, a start or count that is not
// a 32-bit number, an empty range, a range past 2^32-1) are skipped, as
// shadow's own tools skip them.
func ParseSubIDFile(r io.Reader) ([]SubIDEntry, error) {
	var out []SubIDEntry
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
		rg, ok := parseRange(f[1], f[2])
		if !ok {
			continue
		}
		out = append(out, SubIDEntry{Owner: f[0], Range: rg})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read subordinate id file: %w", err)
	}
	return out, nil
}

// SubIDsOf returns the ranges of entries that belong to the user, matched by
// name or by numeric id (an empty name matches by id only), in order and
// without duplicates.
func SubIDsOf(entries []SubIDEntry, name string, id uint32) []Range {
	idStr := strconv.FormatUint(uint64(id), 10)
	var out []Range
	for _, e := range entries {
		if e.Owner != idStr && (name == "" || e.Owner != name) {
			continue
		}
		out = appendUnique(out, e.Range)
	}
	return out
}

// ParseSubID returns the ranges of /etc/subuid (or /etc/subgid) content that
// belong to the user: ParseSubIDFile, then SubIDsOf.
func ParseSubID(r io.Reader, name string, id uint32) ([]Range, error) {
	entries, err := ParseSubIDFile(r)
	if err != nil {
		return nil, err
	}
	return SubIDsOf(entries, name, id), nil
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

// FreeSubIDStart picks the start of a 65536-id range above every range in
// use, aligned to 65536, the way useradd allocates them (never below
// 100000). Both `unroot doctor` and the launcher's warning suggest it.
func FreeSubIDStart(used ...[]Range) uint64 {
	next := uint64(100000)
	for _, rs := range used {
		for _, r := range rs {
			if end := uint64(r.Start) + uint64(r.Count); end > next {
				next = end
			}
		}
	}
	if next != 100000 && next%65536 != 0 {
		next = (next/65536 + 1) * 65536
	}
	return next
}

// ParseCgroup2 returns the cgroup v2 path in /proc/PID/cgroup content: the
// "0::/path" line, trimmed. ok is false without one, or when its path is
// not absolute (a v1-only host, or a malformed file).
func ParseCgroup2(s string) (path string, ok bool) {
	for _, line := range strings.Split(s, "\n") {
		if rest, found := strings.CutPrefix(line, "0::"); found {
			p := strings.TrimSpace(rest)
			if !strings.HasPrefix(p, "/") {
				return "", false
			}
			return p, true
		}
	}
	return "", false
}
