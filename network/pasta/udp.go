package pasta

import (
	"fmt"
	"regexp"
	"time"

	"github.com/unroot/unroot/network/internal/helper"
)

// With --udp-ports=auto, pasta forwards the UDP ports bound in the
// namespace. Until passt 2023_11_19 (commit 457ff12, "udp,pasta:
// Periodically scan for ports to automatically forward") it looked for
// them once, when it started; TCP ports it rescans every second. unroot
// starts pasta before the command, so an older pasta never publishes a UDP
// port of the command: Debian 12's passt (2023_03_09) forwards TCP only.
const udpRescanRelease = "2023_11_19"

// udpRescanDate is udpRescanRelease as a comparable number.
const udpRescanDate = 20231119

// implicitUDPWarning is the one-line warning for a pasta that will forward
// no UDP port with --port-driver=implicit, or "" when it will (or when its
// version cannot be told: a warning must not cry wolf).
//
// The options pasta lists tell most releases apart without running it
// again: --map-host-loopback came in 2024_08_21 (newer than the rescan),
// --no-copy-routes in 2023_06_03 (so a pasta without it is older). Between
// the two only the version pasta reports tells; distributions built
// without one report "unknown version".
func implicitUDPWarning(path string, flags map[string]bool, version func() string) string {
	if flags["--map-host-loopback"] || flags["--host-lo-to-ns-lo"] {
		return ""
	}
	what := "passt older than 2023_06_03; Debian 12 ships 2023_03_09"
	if flags["--no-copy-routes"] {
		d, v := releaseDate(version())
		if d == 0 || d >= udpRescanDate {
			return ""
		}
		what = "passt " + v
	}
	return fmt.Sprintf("pasta at %s (%s) forwards only TCP with --port-driver=implicit: it looks for bound UDP ports only when it starts, before the command runs, so no UDP port the command binds is published; for UDP use --port-driver=builtin with -p 0.0.0.0:PORT:PORT/udp (with RootlessKit's flags: --net=slirp4netns --port-driver=builtin), or install passt %s or newer", path, what, udpRescanRelease)
}

// releaseRE finds the date in a passt version: upstream's "2023_11_19.4f1709d",
// Debian's "0.0~git20240220.1e6f92b-1", Fedora's "0^20240220.g1e6f92b".
var releaseRE = regexp.MustCompile(`(?:^|[^0-9])(20[0-9]{2})_?(0[1-9]|1[0-2])_?(0[1-9]|[12][0-9]|3[01])(?:[^0-9]|$)`)

// releaseDate returns the date of a passt version text as YYYYMMDD and the
// text it was read from, or 0 when there is none ("unknown version").
func releaseDate(version string) (int, string) {
	m := releaseRE.FindStringSubmatch(version)
	if m == nil {
		return 0, ""
	}
	var d int
	fmt.Sscanf(m[1]+m[2]+m[3], "%d", &d)
	return d, m[1] + "_" + m[2] + "_" + m[3]
}

// versionTimeout bounds "pasta --version", which answers at once.
const versionTimeout = 2 * time.Second

// pastaVersion is what "path --version" prints, or "" if it does not answer.
func pastaVersion(path string) string {
	return helper.Output(path, versionTimeout, "--version")
}
