package main

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"github.com/unroot/unroot/bench/internal/report"
)

// ---- UDP through a published port while the CPUs are busy ----

// udpLoadSizes are the datagram sizes of the loaded runs: an overlay's
// frames, and iperf3's 32 KiB default for UDP on loopback-sized MTUs.
var udpLoadSizes = []struct {
	id, size string
}{{"udp-busy-32k", "32768"}, {"udp-busy-1400", "1400"}}

// udpLoadGroup measures what arrives of a fixed 1 Gbit/s UDP stream while
// two busy loops compete for the CPUs: the sender, relay and receiver then
// run in slices, and each drops what its socket buffer cannot hold in the
// gaps. RootlessKit's builtin UDP forwarders (v3.3 and 1.1) read and send
// one datagram at a time, as unroot's did before it batched.
func (h *harness) udpLoadGroup() *group {
	note := "iperf3 -u -b 1G for the run's length, received goodput; two `while :; do :; done` loops run on the host for each run's length (started after the launcher is up, ended before the next variant). The figure depends on the scheduler more than on the relay: compare ratios of medians, and expect wide ranges."
	g := &group{name: "udpload", reps: 1}
	var ids []string
	for _, s := range udpLoadSizes {
		g.benches = append(g.benches, &report.Bench{ID: s.id, Unit: "Gbit/s", HigherIsBetter: true, Note: note,
			Title: fmt.Sprintf("UDP host → namespace through a published port with two busy loops running, received (iperf3 -u -b 1G -l %s)", s.size)})
		ids = append(ids, s.id)
	}
	g.variants = append(g.variants, variant{label: "host loopback", peer: "ref", refKey: "lo", benches: ids,
		run: func(ctx context.Context) (map[string]float64, error) {
			port, err := h.hostIperf(ctx)
			if err != nil {
				return nil, err
			}
			return h.udpBusyRuns(ctx, port)
		}})
	g.variants = append(g.variants, h.peerVariants("builtin", "slirp4netns", "builtin", "lo", ids, func(p *peer) func(context.Context) (map[string]float64, error) {
		return func(ctx context.Context) (map[string]float64, error) {
			s, hp, err := h.forward(ctx, p, "builtin", "iperf3 -s -p PORT >/dev/null 2>&1", "tcp", "udp")
			if err != nil {
				return nil, err
			}
			defer s.stop(h)
			return h.udpBusyRuns(ctx, hp)
		}
	})...)
	return g
}

// udpBusyRuns runs one iperf3 UDP client per size against port with two
// busy loops running.
func (h *harness) udpBusyRuns(ctx context.Context, port int) (map[string]float64, error) {
	stop, err := busyLoops(ctx, 2)
	if err != nil {
		return nil, err
	}
	defer stop()
	secs := h.udpSecs()
	out := map[string]float64{}
	for _, s := range udpLoadSizes {
		// iperf3 -s binds its TCP listener again after each test.
		if err := h.hostListening(ctx, port, 10*time.Second); err != nil {
			return nil, err
		}
		r, err := h.iperfClientTimeout(ctx, time.Duration(secs+15)*time.Second, "-c", "127.0.0.1", "-p", strconv.Itoa(port), "-u", "-l", s.size,
			"-b", "1G", "-t", strconv.Itoa(secs), "-J")
		if err != nil {
			return nil, err
		}
		out[s.id] = gbps(r.Goodput())
	}
	return out, nil
}

// busyLoops starts n shell loops that spin until stop ends them.
func busyLoops(ctx context.Context, n int) (stop func(), err error) {
	var cmds []*exec.Cmd
	stop = func() {
		for _, c := range cmds {
			_ = c.Process.Kill()
			_ = c.Wait()
		}
	}
	for range n {
		c := exec.CommandContext(ctx, "sh", "-c", "while :; do :; done")
		c.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := c.Start(); err != nil {
			stop()
			return nil, fmt.Errorf("start a busy loop: %w", err)
		}
		cmds = append(cmds, c)
	}
	return stop, nil
}
