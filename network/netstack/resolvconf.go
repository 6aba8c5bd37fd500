package netstack

import (
	"bufio"
	"bytes"
	"net/netip"
	"strings"
)

// parseNameservers returns the nameserver addresses of a resolv.conf, in
// order, as resolver endpoints on port 53. Lines it does not understand are
// skipped, as the C library does. An empty result means "use 127.0.0.1",
// again as the C library does; the caller applies that.
func parseNameservers(data []byte) []netip.AddrPort {
	var out []netip.AddrPort
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 64*1024)
	for sc.Scan() {
		line := sc.Text()
		if i := strings.IndexAny(line, "#;"); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "nameserver" {
			continue
		}
		// A zone (fe80::1%eth0) names a host interface; keep it, the host
		// socket understands it.
		a, err := netip.ParseAddr(f[1])
		if err != nil {
			continue
		}
		out = append(out, netip.AddrPortFrom(a, 53))
	}
	return out
}
