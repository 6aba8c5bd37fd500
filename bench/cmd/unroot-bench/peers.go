package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/unroot/unroot/bench/internal/parse"
)

// peer is one launcher under test.
type peer struct {
	id, label string
	bin       string
	version   string
	// missing says why the peer cannot run at all.
	missing string
	nets    map[string]bool
	ports   map[string]bool
	// unsupported maps a driver the peer has to the reason it cannot work
	// on this machine.
	unsupported map[string]string
}

func set(xs ...string) map[string]bool {
	m := map[string]bool{}
	for _, x := range xs {
		m[x] = true
	}
	return m
}

// findPeers lists unroot (always, so that a missing build shows as n/a
// rows), RootlessKit v3 and RootlessKit 1.1 with the drivers each has.
func findPeers(ctx context.Context, h *harness) []*peer {
	ps := []*peer{
		{id: "unroot", label: "unroot", bin: filepath.Join(h.o.unroot, "rootlesskit"),
			nets: set("host", "slirp4netns", "pasta", "netstack"), ports: set("builtin", "slirp4netns", "implicit", "bypass")},
		{id: "rk3", label: "RK v3.3.0", bin: h.o.rk3,
			nets: set("host", "slirp4netns", "pasta", "gvisor-tap-vsock"), ports: set("builtin", "slirp4netns", "implicit", "gvisor-tap-vsock")},
		{id: "rk1", label: "RK 1.1.0", bin: h.o.rk1,
			nets: set("host", "slirp4netns"), ports: set("builtin", "slirp4netns")},
	}
	// RootlessKit v3's implicit port driver needs pasta ≥ 2023_06_25 (its
	// docs/network.md); older pasta starts but never binds the host port.
	if out, _, err := h.runCmd(ctx, 10*time.Second, false, "dpkg-query", "-W", "-f", "${Version}", "passt"); err == nil {
		if d, ok := parse.SnapshotDate(strings.TrimSpace(out)); ok && d < 20230625 {
			ps[1].unsupported = map[string]string{"implicit": fmt.Sprintf("RootlessKit v3 needs pasta ≥ 2023_06_25 for the implicit port driver; this machine has passt %s (pasta runs but never binds the published port)", strings.TrimSpace(out))}
		}
	}
	for _, p := range ps {
		if fi, err := os.Stat(p.bin); err != nil || fi.Mode()&0o111 == 0 {
			p.missing = p.bin + " is missing (bench/run.sh builds or installs it)"
			if p.id == "unroot" {
				p.missing = "unroot is not built: " + p.bin + " is missing (bench/run.sh builds ./cmd/unroot there)"
			}
			continue
		}
		out, errOut, err := h.runCmd(ctx, 10*time.Second, true, p.bin, "--version")
		if err != nil {
			p.missing = p.bin + " --version failed: " + tail(errOut, 1)
			continue
		}
		p.version = strings.TrimSpace(strings.SplitN(out, "\n", 2)[0])
	}
	h.cleanup()
	return ps
}

// supports says whether the peer has the network and port driver. An empty
// port means "no port driver needed".
func (p *peer) supports(net, port string) bool {
	return p.nets[net] && (port == "" || p.ports[port])
}
