package bypass

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"net/netip"
	"strconv"
	"strings"
)

// parseRoutes4 reads /proc/PID/net/route: every destination prefix but the
// default route (those are the namespace's own networks: the tap's subnet,
// bridges of containers inside, routes someone added).
func parseRoutes4(s string) []netip.Prefix {
	var out []netip.Prefix
	sc := bufio.NewScanner(strings.NewReader(s))
	first := true
	for sc.Scan() {
		if first {
			first = false
			continue // header
		}
		f := strings.Fields(sc.Text())
		if len(f) < 8 {
			continue
		}
		dst, err1 := strconv.ParseUint(f[1], 16, 32)
		mask, err2 := strconv.ParseUint(f[7], 16, 32)
		if err1 != nil || err2 != nil {
			continue
		}
		// The file prints the words in host (little-endian) order.
		var d, m [4]byte
		binary.LittleEndian.PutUint32(d[:], uint32(dst))
		binary.LittleEndian.PutUint32(m[:], uint32(mask))
		bits := 0
		for _, b := range m {
			for i := 7; i >= 0 && b&(1<<i) != 0; i-- {
				bits++
			}
			if b != 0xff {
				break
			}
		}
		if bits == 0 {
			continue
		}
		p, err := netip.AddrFrom4(d).Prefix(bits)
		if err == nil {
			out = append(out, p)
		}
	}
	return out
}

// parseRoutes6 reads /proc/PID/net/ipv6_route, leaving out default routes.
func parseRoutes6(s string) []netip.Prefix {
	var out []netip.Prefix
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || len(f[0]) != 32 {
			continue
		}
		b, err := hex.DecodeString(f[0])
		bits, err2 := strconv.ParseUint(f[1], 16, 8)
		if err != nil || err2 != nil || bits == 0 || bits > 128 {
			continue
		}
		p, err := netip.AddrFrom16([16]byte(b)).Prefix(int(bits))
		if err == nil {
			out = append(out, p)
		}
	}
	return out
}

// parseTgid reads the "Tgid:" line of /proc/TID/status: the process a
// thread belongs to.
func parseTgid(status string) (int, bool) {
	for _, line := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(line, "Tgid:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			return n, err == nil && n > 0
		}
	}
	return 0, false
}
