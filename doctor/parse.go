package doctor

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/unroot/unroot/internal/procfs"
)

// Pure parsers of /proc, /etc and tool output. Each takes the text (never a
// path) so tests feed it literal contents and fuzzers feed it garbage.

// idRange is one subordinate id range.
type idRange struct {
	Start, Count uint64
}

func (r idRange) end() uint64 { return r.Start + r.Count }

// parseSysctlInt reads an integer sysctl value such as "96365\n".
func parseSysctlInt(s string) (int64, error) {
	v, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse sysctl value %q: %w", strings.TrimSpace(s), err)
	}
	return v, nil
}

// parsePingGroupRange reads net.ipv4.ping_group_range ("1\t0" means nobody).
func parsePingGroupRange(s string) (lo, hi int64, err error) {
	f := strings.Fields(s)
	if len(f) != 2 {
		return 0, 0, fmt.Errorf("parse ping_group_range %q: want two numbers", strings.TrimSpace(s))
	}
	if lo, err = strconv.ParseInt(f[0], 10, 64); err != nil {
		return 0, 0, fmt.Errorf("parse ping_group_range %q: %w", s, err)
	}
	if hi, err = strconv.ParseInt(f[1], 10, 64); err != nil {
		return 0, 0, fmt.Errorf("parse ping_group_range %q: %w", s, err)
	}
	return lo, hi, nil
}

// parseSubIDFile returns the ranges /etc/subuid or /etc/subgid grants to the
// user and every range in the file (to find a free one for the usermod
// hint), read with the launcher's own parser (internal/procfs) so doctor
// and `unroot run` see the same ranges.
func parseSubIDFile(s, name string, uid uint32) (mine, all []idRange, err error) {
	entries, err := procfs.ParseSubIDFile(strings.NewReader(s))
	if err != nil {
		return nil, nil, err
	}
	for _, e := range entries {
		all = append(all, toIDRange(e.Range))
	}
	return toIDRanges(procfs.SubIDsOf(entries, name, uid)), all, nil
}

// parseGetsubids reads `getsubids USER` output with the launcher's own parser
// (internal/procfs), so doctor and `unroot run` agree on what they accept.
func parseGetsubids(s string) ([]idRange, error) {
	rs, err := procfs.ParseGetsubids(s)
	if err != nil {
		return nil, err
	}
	return toIDRanges(rs), nil
}

func toIDRange(r procfs.Range) idRange {
	return idRange{Start: uint64(r.Start), Count: uint64(r.Count)}
}

func toIDRanges(rs []procfs.Range) []idRange {
	var out []idRange
	for _, r := range rs {
		out = append(out, toIDRange(r))
	}
	return out
}

// freeSubIDStart picks the start of a 65536-id range above every range in
// use (procfs.FreeSubIDStart, which the launcher's warning uses too).
func freeSubIDStart(used ...[]idRange) uint64 {
	var rs []procfs.Range
	for _, u := range used {
		for _, r := range u {
			// Both come from procfs.Range, so they fit 32 bits.
			rs = append(rs, procfs.Range{Start: uint32(r.Start), Count: uint32(r.Count)})
		}
	}
	return procfs.FreeSubIDStart(rs)
}

// parseOSRelease reads /etc/os-release KEY=value lines (values may be quoted).
func parseOSRelease(s string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || k == "" {
			continue
		}
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		}
		m[k] = v
	}
	return m
}

// fileCaps is the part of a security.capability xattr the checks need.
type fileCaps struct {
	Permitted uint64
	Effective bool
}

const (
	capSetgid = 6
	capSetuid = 7
)

func (c fileCaps) has(capNum uint) bool { return c.Permitted&(1<<capNum) != 0 }

// parseVFSCap decodes a security.capability xattr (struct vfs_cap_data,
// revisions 1 to 3, little-endian).
func parseVFSCap(b []byte) (fileCaps, error) {
	if len(b) < 4 {
		return fileCaps{}, errors.New("parse file capabilities: xattr too short")
	}
	magic := binary.LittleEndian.Uint32(b)
	var c fileCaps
	c.Effective = magic&0x1 != 0
	switch rev := magic & 0xFF000000; rev {
	case 0x01000000:
		if len(b) < 12 {
			return fileCaps{}, fmt.Errorf("parse file capabilities: revision 1 needs 12 bytes, have %d", len(b))
		}
		c.Permitted = uint64(binary.LittleEndian.Uint32(b[4:]))
	case 0x02000000, 0x03000000:
		need := 20
		if rev == 0x03000000 {
			need = 24
		}
		if len(b) < need {
			return fileCaps{}, fmt.Errorf("parse file capabilities: revision %d needs %d bytes, have %d", rev>>24, need, len(b))
		}
		c.Permitted = uint64(binary.LittleEndian.Uint32(b[4:])) | uint64(binary.LittleEndian.Uint32(b[12:]))<<32
	default:
		return fileCaps{}, fmt.Errorf("parse file capabilities: unknown revision %#x", rev)
	}
	return c, nil
}

// parseVersion pulls the version out of a helper's --version output:
// "slirp4netns version 1.2.0" → "1.2.0", "pasta 0^20230509.g96f8d55-1" →
// "0^20230509.g96f8d55-1", "pasta unknown version" → "unknown".
func parseVersion(out string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(out), "\n")
	f := strings.Fields(line)
	for i, w := range f {
		if w == "version" && i+1 < len(f) {
			return f[i+1]
		}
	}
	if len(f) >= 2 {
		if f[1] == "unknown" {
			return "unknown"
		}
		return f[1]
	}
	return "unknown"
}
