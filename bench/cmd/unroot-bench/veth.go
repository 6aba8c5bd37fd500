package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/unroot/unroot/bench/internal/parse"
)

// veth is the physical reference: two network namespaces made by root,
// joined by a veth pair, with no user-mode code in the path.
type veth struct {
	h      *harness
	a, b   string // netns names
	ia, ib string // interface names
}

const vethA, vethB = "10.254.77.1", "10.254.77.2"

func (h *harness) vethPair(ctx context.Context) (*veth, error) {
	if h.veth != nil {
		return h.veth, nil
	}
	id := strconv.Itoa(os.Getpid())
	v := &veth{h: h, a: "unroot-bench-a-" + id, b: "unroot-bench-b-" + id, ia: "ubva" + id, ib: "ubvb" + id}
	h.veth = v
	steps := [][]string{
		{"netns", "add", v.a},
		{"netns", "add", v.b},
		{"link", "add", v.ia, "netns", v.a, "type", "veth", "peer", "name", v.ib, "netns", v.b},
		{"-n", v.a, "addr", "add", vethA + "/30", "dev", v.ia},
		{"-n", v.b, "addr", "add", vethB + "/30", "dev", v.ib},
		{"-n", v.a, "link", "set", v.ia, "up"},
		{"-n", v.b, "link", "set", v.ib, "up"},
		{"-n", v.a, "link", "set", "lo", "up"},
		{"-n", v.b, "link", "set", "lo", "up"},
	}
	for _, s := range steps {
		if _, _, err := h.runCmd(ctx, 10*time.Second, false, "ip", s...); err != nil {
			return nil, fmt.Errorf("make the veth reference: %w", err)
		}
	}
	return v, nil
}

// removeStale deletes veth namespaces left by a harness that was killed
// before it could clean up (their names carry its pid).
func (h *harness) removeStale(ctx context.Context) {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "unroot-bench-*-*"))
	for _, d := range dirs {
		var pid int
		if _, err := fmt.Sscanf(strings.TrimPrefix(filepath.Base(d), "unroot-bench-"), "%d-", &pid); err != nil || pid == os.Getpid() {
			continue
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); os.IsNotExist(err) {
			_ = os.RemoveAll(d)
		}
	}
	out, _, err := h.runCmd(ctx, 10*time.Second, false, "ip", "netns", "list")
	if err != nil {
		return
	}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		name := f[0]
		var pid int
		if _, err := fmt.Sscanf(name[strings.LastIndexByte(name, '-')+1:], "%d", &pid); err != nil || !strings.HasPrefix(name, "unroot-bench-") {
			continue
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			continue // another harness still uses it
		}
		_, _, _ = h.runCmd(ctx, 10*time.Second, false, "ip", "netns", "del", name)
	}
}

// remove deletes both namespaces, which takes the veth pair with them.
func (v *veth) remove() {
	for _, ns := range []string{v.a, v.b} {
		_, _, _ = v.h.runCmd(context.Background(), 10*time.Second, false, "ip", "netns", "del", ns)
	}
}

// vethIperf runs iperf3 from namespace a to a server in b at the MTU.
func (h *harness) vethIperf(ctx context.Context, mtu int, _ bool) (parse.Iperf3, error) {
	v, err := h.vethPair(ctx)
	if err != nil {
		return parse.Iperf3{}, err
	}
	for _, s := range [][]string{{"-n", v.a, "link", "set", v.ia, "mtu", strconv.Itoa(mtu)}, {"-n", v.b, "link", "set", v.ib, "mtu", strconv.Itoa(mtu)}} {
		if _, _, err := h.runCmd(ctx, 10*time.Second, false, "ip", s...); err != nil {
			return parse.Iperf3{}, err
		}
	}
	srv, err := h.start(h.command(ctx, false, "ip", "netns", "exec", v.b, "iperf3", "-s", "-B", vethB, "-p", "5201"))
	if err != nil {
		return parse.Iperf3{}, err
	}
	// Wait until the server listens inside b.
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, _, _ := h.runCmd(ctx, 5*time.Second, false, "ip", "netns", "exec", v.b, "ss", "-Hltn", "sport = :5201")
		if len(out) > 0 {
			break
		}
		if srv.exited() || time.Now().After(deadline) {
			return parse.Iperf3{}, fmt.Errorf("iperf3 server in %s did not start: %s", v.b, tail(srv.stderr.String(), 2))
		}
		time.Sleep(20 * time.Millisecond)
	}
	return h.iperfClient(ctx, false, v.a, "-c", vethB, "-p", "5201", "-t", strconv.Itoa(h.secs()), "-J")
}
