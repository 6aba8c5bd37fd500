package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/unroot/unroot/bench/internal/parse"
	"github.com/unroot/unroot/bench/internal/report"
)

// variant is one thing measured once per round; it yields figures for one
// or more benchmarks of its group.
type variant struct {
	label, peer, config, refKey string
	benches                     []string
	run                         func(ctx context.Context) (map[string]float64, error)
	// skip: the variant cannot run at all (peer missing); its rows say why.
	skip string
	// unsupported: skip is a feature the peer lacks here, not a failure.
	unsupported bool
}

// group is a set of benchmarks whose variants run interleaved.
type group struct {
	name     string
	benches  []*report.Bench
	variants []variant
	// reps per round; start-up is cheap and noisy, so it repeats more.
	reps int
	// warmup runs every variant once, unrecorded, before the first round:
	// the first launch after a build pays for loading the binaries and
	// their libraries into the page cache, a constant that weighs most on
	// the fastest variant's ratio.
	warmup bool
}

func (h *harness) secs() int { return max(1, int(h.o.duration.Seconds())) }

func (h *harness) runAll(ctx context.Context) (*report.Results, error) {
	res := &report.Results{Started: time.Now(), Quick: h.o.quick, Rounds: h.o.rounds}
	res.Machine = machine()
	res.Versions = h.versions(ctx)
	var groups []*group
	for _, g := range []struct {
		name string
		mk   func() *group
	}{
		{"startup", h.startupGroup}, {"tcp", h.tcpGroup}, {"udp", h.udpGroup}, {"udpload", h.udpLoadGroup},
		{"http", h.httpGroup}, {"out", h.outGroup}, {"mem", h.memGroup}, {"pods", h.podsGroup},
	} {
		if h.o.only != "" && !strings.Contains(","+h.o.only+",", ","+g.name+",") {
			continue
		}
		groups = append(groups, g.mk())
	}
	if len(groups) == 0 {
		return nil, fmt.Errorf("--only %q names no group; use startup,tcp,udp,udpload,http,out,mem,pods", h.o.only)
	}
	for _, g := range groups {
		if err := h.runGroup(ctx, g); err != nil {
			return nil, err
		}
		res.Benchmarks = append(res.Benchmarks, g.benches...)
	}
	res.Finished = time.Now()
	res.Machine = append(res.Machine, report.KV{Key: "load average at end", Value: loadavg()})
	res.Targets = targets(res)
	res.Method = h.method()
	for _, p := range append(h.peers, h.b4n) {
		if p.missing != "" {
			res.Notes = append(res.Notes, fmt.Sprintf("%s: %s", p.label, p.missing))
		}
	}
	return res, nil
}

// runGroup runs every variant once per repetition and round, in the same
// order each time, so that drift in machine load spreads over all of them.
func (h *harness) runGroup(ctx context.Context, g *group) error {
	rows := map[string]map[string]*report.Row{}
	for _, b := range g.benches {
		rows[b.ID] = map[string]*report.Row{}
	}
	for _, v := range g.variants {
		for _, id := range v.benches {
			r := &report.Row{Label: v.label, Peer: v.peer, Config: v.config, RefKey: v.refKey, NA: v.skip, Unsupported: v.unsupported}
			rows[id][v.label] = r
			for _, b := range g.benches {
				if b.ID == id {
					b.Rows = append(b.Rows, r)
				}
			}
		}
	}
	failures := map[string]int{}
	if g.warmup {
		for _, v := range g.variants {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if v.skip != "" {
				continue
			}
			_, err := v.run(ctx)
			h.cleanup()
			h.log.Debug("warm-up", "group", g.name, "variant", v.label, "err", err)
		}
	}
	for round := 1; round <= h.o.rounds; round++ {
		for rep := 0; rep < g.reps; rep++ {
			for _, v := range g.variants {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if v.skip != "" || failures[v.label] >= 2 {
					continue
				}
				t0 := time.Now()
				vals, err := v.run(ctx)
				h.cleanup()
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if err != nil {
					failures[v.label]++
					h.log.Warn("variant failed", "group", g.name, "variant", v.label, "round", round, "err", err)
					for _, id := range v.benches {
						rows[id][v.label].NA = err.Error()
					}
					continue
				}
				failures[v.label] = 0
				for id, val := range vals {
					if r := rows[id][v.label]; r != nil {
						r.Samples = append(r.Samples, val)
					}
				}
				h.log.Info("measured", "group", g.name, "round", round, "variant", v.label, "values", fmtVals(vals), "took", time.Since(t0).Round(time.Millisecond))
			}
		}
	}
	for _, b := range g.benches {
		for _, r := range b.Rows {
			if len(r.Samples) > 0 {
				r.NA = ""
			}
		}
	}
	return nil
}

func fmtVals(m map[string]float64) string {
	var s []string
	for k, v := range m {
		s = append(s, k+"="+report.Format(v))
	}
	return strings.Join(s, " ")
}

// peerVariants adds a variant per peer that supports net+port.
func (h *harness) peerVariants(config, net, port, refKey string, benches []string, mk func(p *peer) func(context.Context) (map[string]float64, error)) []variant {
	var vs []variant
	for _, p := range h.peers {
		if !p.supports(net, port) {
			continue
		}
		v := variant{label: p.label + " · " + config, peer: p.id, config: config, refKey: refKey, benches: benches, skip: p.missing}
		if why, ok := p.unsupported[port]; ok && port != "" {
			v.skip, v.unsupported = why, true
		}
		if v.skip == "" {
			v.run = mk(p)
		}
		vs = append(vs, v)
	}
	return vs
}

// ---- start-up ----

func (h *harness) startupGroup() *group {
	g := &group{name: "startup", reps: 4,
		benches: []*report.Bench{
			{ID: "startup", Title: "Start-up: launcher running `true`, exec to exit", Unit: "ms",
				Note: "Flags: host = `--net=host`; slirp4netns, copy-up, pidns = `--net=slirp4netns --copy-up=/etc --disable-host-loopback --pidns`; pasta, copy-up = `--net=pasta --copy-up=/etc --disable-host-loopback`."},
			{ID: "leaks", Title: "Processes left running after the launcher exited", Unit: "processes", NoRatios: true,
				Note: "Counted 100 ms after exit among the launcher's descendants (the harness is their subreaper)."},
		}}
	if h.o.quick {
		g.reps = 1
	} else {
		g.warmup = true
	}
	g.variants = append(g.variants, variant{label: "floor: unshare -U -r -n -m true", peer: "ref", refKey: "floor",
		benches: []string{"startup"}, run: func(ctx context.Context) (map[string]float64, error) {
			t0 := time.Now()
			if _, _, err := h.runCmd(ctx, 10*time.Second, true, "unshare", "--user", "--map-root-user", "--net", "--mount", "true"); err != nil {
				return nil, err
			}
			return map[string]float64{"startup": ms(time.Since(t0))}, nil
		}})
	sets := []struct {
		config, net string
		flags       []string
	}{
		{"host", "host", []string{"--net=host"}},
		{"slirp4netns, copy-up, pidns", "slirp4netns", []string{"--net=slirp4netns", "--copy-up=/etc", "--disable-host-loopback", "--pidns"}},
		{"pasta, copy-up", "pasta", []string{"--net=pasta", "--copy-up=/etc", "--disable-host-loopback"}},
	}
	for _, s := range sets {
		g.variants = append(g.variants, h.peerVariants(s.config, s.net, "", "floor", []string{"startup", "leaks"}, func(p *peer) func(context.Context) (map[string]float64, error) {
			return func(ctx context.Context) (map[string]float64, error) {
				dir, err := h.scratch()
				if err != nil {
					return nil, err
				}
				args := append([]string{"--state-dir=" + filepath.Join(dir, "state")}, s.flags...)
				args = append(args, "true")
				t0 := time.Now()
				if _, _, err := h.runCmd(ctx, 20*time.Second, true, p.bin, args...); err != nil {
					return nil, err
				}
				d := time.Since(t0)
				time.Sleep(100 * time.Millisecond)
				left := 0
				for _, q := range descendants() {
					if !q.zombie {
						left++
					}
				}
				return map[string]float64{"startup": ms(d), "leaks": float64(left)}, nil
			}
		})...)
	}
	return g
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

// ---- host → namespace through a published port ----

// portFlags are the launcher flags for a port driver, publishing hostPort
// to childPort for the protocols.
func portFlags(driver string, hostPort, childPort int, protos ...string) (flags []string, net string) {
	var pub []string
	for _, proto := range protos {
		pub = append(pub, "-p", fmt.Sprintf("127.0.0.1:%d:%d/%s", hostPort, childPort, proto))
	}
	switch driver {
	case "implicit":
		// pasta forwards the ports it sees listening inside, same number.
		return []string{"--net=pasta", "--mtu=65520", "--disable-host-loopback", "--port-driver=implicit"}, "pasta"
	case "gvisor-tap-vsock":
		return append([]string{"--net=gvisor-tap-vsock", "--mtu=65520", "--port-driver=gvisor-tap-vsock"}, pub...), "gvisor-tap-vsock"
	case "bypass":
		// The builtin driver publishes; the server's own socket takes the
		// port on the host (unroot's --bypass, docs/bypass.md).
		return append([]string{"--net=slirp4netns", "--mtu=65520", "--disable-host-loopback", "--port-driver=builtin", "--bypass"}, pub...), "slirp4netns"
	default:
		return append([]string{"--net=slirp4netns", "--mtu=65520", "--disable-host-loopback", "--port-driver=" + driver}, pub...), "slirp4netns"
	}
}

const childPort = 5201

// serverInside is a script that starts a server listening on port and
// signals readiness once the socket is listening.
func serverInside(server string, port int, proto string) string {
	flag := "-Hltn"
	if proto == "udp" {
		flag = "-Hlun"
	}
	return fmt.Sprintf(`%s & until ss %s 'sport = :%d' | grep -q .; do sleep 0.02; done; touch DIR/ready; wait`, server, flag, port)
}

// serverFor is serverInside, except under --bypass: the server's socket is
// on the host then, where bypassListening waits for it.
func serverFor(driver, server string, port int, proto string) string {
	if driver == "bypass" {
		return server + " & touch DIR/ready; wait"
	}
	return serverInside(server, port, proto)
}

// bypassListening waits until a process other than the launcher listens on
// the host's port: the server inside, through --bypass.
func (h *harness) bypassListening(ctx context.Context, port int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		out, _, err := h.runCmd(ctx, 5*time.Second, false, "ss", "-Hltnp", fmt.Sprintf("sport = :%d", port))
		if err == nil && strings.Contains(out, "users:") && !strings.Contains(out, `"rootlesskit"`) && !strings.Contains(out, `"unroot"`) {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("no server took port %d on the host through --bypass within %v: %s", port, timeout, strings.TrimSpace(out))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// forward starts a launcher with a server inside reachable on a free host
// port through the port driver; it returns the session and the host port.
func (h *harness) forward(ctx context.Context, p *peer, driver, server string, protos ...string) (*session, int, error) {
	hp, err := freePort()
	if err != nil {
		return nil, 0, err
	}
	cp := childPort
	if driver == "implicit" {
		cp = hp
	}
	flags, _ := portFlags(driver, hp, cp, protos...)
	srv := strings.ReplaceAll(server, "PORT", strconv.Itoa(cp))
	s, err := h.launch(ctx, p, flags, serverFor(driver, srv, cp, "tcp"))
	if err != nil {
		return nil, 0, err
	}
	if driver == "bypass" {
		if err := h.bypassListening(ctx, hp, 15*time.Second); err != nil {
			s.stop(h)
			return nil, 0, err
		}
	}
	if driver == "implicit" {
		if err := h.hostListening(ctx, hp, 15*time.Second); err != nil {
			s.stop(h)
			return nil, 0, err
		}
	}
	return s, hp, nil
}

// iperfClientTimeout runs the iperf3 client as the test user with a bound on
// how long it may take: some forwarders never answer iperf3's UDP handshake.
func (h *harness) iperfClientTimeout(ctx context.Context, timeout time.Duration, args ...string) (parse.Iperf3, error) {
	return retryBusy(ctx, func() (parse.Iperf3, error) { return h.iperfClientTimeoutOnce(ctx, timeout, args...) })
}

// retryBusy runs one iperf3 client run again while the server answers that
// it is busy: an iperf3 server takes a moment after each test (or after
// hostServer's probe connection, which it counts as a failed test) before
// it accepts the next one, longer on a loaded machine. Nothing was
// measured in a refused run.
func retryBusy(ctx context.Context, run func() (parse.Iperf3, error)) (parse.Iperf3, error) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, err := run()
		if err == nil || !strings.Contains(err.Error(), "server is busy") || time.Now().After(deadline) || ctx.Err() != nil {
			return r, err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (h *harness) iperfClientTimeoutOnce(ctx context.Context, timeout time.Duration, args ...string) (parse.Iperf3, error) {
	out, _, err := h.runCmd(ctx, timeout, true, "iperf3", args...)
	if err != nil {
		if strings.Contains(err.Error(), "timed out") {
			return parse.Iperf3{}, fmt.Errorf("iperf3 got no answer within %v (the forwarder dropped its handshake)", timeout)
		}
		if r, perr := parse.ParseIperf3([]byte(out)); perr != nil && strings.Contains(perr.Error(), "iperf3:") {
			return r, perr
		}
		return parse.Iperf3{}, err
	}
	return parse.ParseIperf3([]byte(out))
}

func (h *harness) iperfClient(ctx context.Context, asUser bool, ns string, args ...string) (parse.Iperf3, error) {
	return retryBusy(ctx, func() (parse.Iperf3, error) { return h.iperfClientOnce(ctx, asUser, ns, args...) })
}

func (h *harness) iperfClientOnce(ctx context.Context, asUser bool, ns string, args ...string) (parse.Iperf3, error) {
	name := "iperf3"
	if ns != "" {
		args = append([]string{"netns", "exec", ns, "iperf3"}, args...)
		name = "ip"
	}
	out, _, err := h.runCmd(ctx, h.o.duration+30*time.Second, asUser, name, args...)
	if err != nil {
		if r, perr := parse.ParseIperf3([]byte(out)); perr != nil && strings.Contains(perr.Error(), "iperf3:") {
			return r, perr
		}
		return parse.Iperf3{}, err
	}
	return parse.ParseIperf3([]byte(out))
}

func gbps(bits float64) float64 { return bits / 1e9 }

// hostIperf starts an iperf3 server on host loopback, on a free port, as
// the test user and returns the port once it listens.
func (h *harness) hostIperf(ctx context.Context) (int, error) {
	port, err := freePort()
	if err != nil {
		return 0, err
	}
	return port, h.hostServer(ctx, "iperf3", []string{"-s", "-B", "127.0.0.1", "-p", strconv.Itoa(port)}, port)
}

// hostServer starts a server on the host as the test user and waits until it listens.
func (h *harness) hostServer(ctx context.Context, name string, args []string, port int) error {
	s, err := h.start(h.command(ctx, true, name, args...))
	if err != nil {
		return err
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp4", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			c.Close()
			// iperf3 takes the probe as a failed test; let it settle.
			time.Sleep(50 * time.Millisecond)
			return nil
		}
		if s.exited() || time.Now().After(deadline) {
			return fmt.Errorf("%s on port %d did not start: %s", name, port, tail(s.stderr.String()+s.stdout.String(), 2))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (h *harness) tcpGroup() *group {
	g := &group{name: "tcp", reps: 1, benches: []*report.Bench{
		{ID: "tcp-port", Title: "TCP host → namespace through a published port (iperf3, 1 stream, loopback client)", Unit: "Gbit/s", HigherIsBetter: true},
		{ID: "cpu-tcp-port", Title: "Launcher + helper CPU per GB moved host → namespace", Unit: "CPU s/GB",
			Note: "utime+stime of every launcher and helper process (iperf3 excluded) over the transfer, from /proc/PID/stat."},
	}}
	g.variants = append(g.variants,
		variant{label: "host loopback", peer: "ref", refKey: "lo", benches: []string{"tcp-port"},
			run: func(ctx context.Context) (map[string]float64, error) {
				port, err := h.hostIperf(ctx)
				if err != nil {
					return nil, err
				}
				r, err := h.iperfClient(ctx, true, "", "-c", "127.0.0.1", "-p", strconv.Itoa(port), "-t", strconv.Itoa(h.secs()), "-J")
				if err != nil {
					return nil, err
				}
				return map[string]float64{"tcp-port": gbps(r.Goodput())}, nil
			}},
		variant{label: "veth pair, MTU 1500 (root)", peer: "ref", refKey: "veth", benches: []string{"tcp-port"},
			run: func(ctx context.Context) (map[string]float64, error) {
				r, err := h.vethIperf(ctx, 1500, false)
				if err != nil {
					return nil, err
				}
				return map[string]float64{"tcp-port": gbps(r.Goodput())}, nil
			}})
	for _, driver := range []string{"builtin", "bypass", "slirp4netns", "implicit", "gvisor-tap-vsock"} {
		_, netd := portFlags(driver, 0, 0)
		config := driver
		if driver == "implicit" {
			config = "implicit (pasta)"
		}
		g.variants = append(g.variants, h.peerVariants(config, netd, driver, "lo", []string{"tcp-port", "cpu-tcp-port"}, func(p *peer) func(context.Context) (map[string]float64, error) {
			return func(ctx context.Context) (map[string]float64, error) {
				s, hp, err := h.forward(ctx, p, driver, "iperf3 -s -p PORT >/dev/null 2>&1", "tcp")
				if err != nil {
					return nil, err
				}
				defer s.stop(h)
				return h.tcpPortMeasure(ctx, hp)
			}
		})...)
	}
	g.variants = append(g.variants, h.b4nVariant("bypass", "lo", []string{"tcp-port", "cpu-tcp-port"}, func(ctx context.Context) (map[string]float64, error) {
		s, hp, err := h.b4nForward(ctx, "iperf3 -s -p PORT >/dev/null 2>&1", childPort)
		if err != nil {
			return nil, err
		}
		defer s.stop(h)
		return h.tcpPortMeasure(ctx, hp)
	}))
	return g
}

// tcpPortMeasure runs iperf3 against host port hp on 127.0.0.1 and gives
// the tcp group's values: goodput and the CPU seconds per GB it cost.
func (h *harness) tcpPortMeasure(ctx context.Context, hp int) (map[string]float64, error) {
	a := cpuTicks()
	r, err := h.iperfClient(ctx, true, "", "-c", "127.0.0.1", "-p", strconv.Itoa(hp), "-t", strconv.Itoa(h.secs()), "-J")
	b := cpuTicks()
	if err != nil {
		return nil, err
	}
	return map[string]float64{"tcp-port": gbps(r.Goodput()), "cpu-tcp-port": cpuSeconds(a, b) / (r.Bytes / 1e9)}, nil
}

// ---- UDP ----

func (h *harness) udpGroup() *group {
	g := &group{name: "udp", reps: 1, benches: []*report.Bench{
		{ID: "udp-port", Title: "UDP host → namespace through a published port, goodput at < 1% loss (iperf3 -u -l 1400)", Unit: "Gbit/s", HigherIsBetter: true,
			Note: "Each round searches for the edge, at most 6 runs: it starts from the highest rate that passed in the last round (first: 1 Gbit/s), raises it 30% while runs pass, then halves the gap between the highest pass and the lowest run with ≥ 1% loss (after a loss with no pass yet: 90% of what arrived); the figure is the best goodput that passed; a round with no passing run records nothing. Only the builtin port driver: slirp4netns's hostfwd never answers iperf3's UDP handshake (with every peer), and pasta's automatic forwarding learns only UDP ports that stay bound, while iperf3 binds its UDP port per test."},
	}}
	loRate := 1e9
	g.variants = append(g.variants, variant{label: "host loopback", peer: "ref", refKey: "lo", benches: []string{"udp-port"},
		run: func(ctx context.Context) (map[string]float64, error) {
			port, err := h.hostIperf(ctx)
			if err != nil {
				return nil, err
			}
			return h.udpSearch(ctx, &loRate, port)
		}})
	g.variants = append(g.variants, h.udpCeilingVariants()...)
	// Only builtin: slirp4netns's hostfwd never answers iperf3's UDP
	// handshake (every peer times out the same way), and pasta's automatic
	// forwarding (implicit) learns only UDP ports that stay bound, while
	// iperf3 binds its UDP port per test.
	g.variants = append(g.variants, h.udpForwardVariants("builtin")...)
	// --bypass: iperf3's UDP socket is a host socket, bound per test.
	g.variants = append(g.variants, h.udpForwardVariants("bypass")...)
	g.variants = append(g.variants, variant{label: b4nLabel + " · bypass", peer: "b4n", config: "bypass", refKey: "lo", benches: []string{"udp-port"},
		skip: b4nUDP, unsupported: true})
	return g
}

// udpSecs is how long each UDP search run lasts, in seconds.
func (h *harness) udpSecs() int {
	if h.o.quick {
		return 1
	}
	return 2
}

// udpSearch looks for the edge in each round: it starts from the highest
// rate that passed in the last round, raises it 30% while runs pass,
// and once a run has lost ≥ 1% it halves the gap between the highest
// pass and the lowest fail; after a fail with no pass yet it drops to
// 90% of what arrived. It records the best goodput that passed: one
// noisy loss costs a step, not the round's figure.
func (h *harness) udpSearch(ctx context.Context, rate *float64, port int) (map[string]float64, error) {
	udpSecs := h.udpSecs()
	var last parse.Iperf3
	pass, fail, best := 0.0, 0.0, 0.0
tries:
	for try := 0; try < 6; try++ {
		// iperf3 -s closes and binds its TCP listener again after
		// every test; through --bypass that bind is a round trip to the
		// launcher, so on a loaded machine the next client could be
		// refused. Wait for the listener (ss, no probe connection).
		if err := h.hostListening(ctx, port, 5*time.Second); err != nil {
			return nil, err
		}
		r, err := h.iperfClientTimeout(ctx, time.Duration(udpSecs+8)*time.Second, "-c", "127.0.0.1", "-p", strconv.Itoa(port), "-u", "-l", "1400",
			"-b", strconv.FormatFloat(*rate, 'f', 0, 64), "-t", strconv.Itoa(udpSecs), "-J")
		if err != nil {
			return nil, err
		}
		last = r
		if r.LostPercent < 1 {
			pass, best = max(pass, *rate), max(best, r.Goodput())
		} else if fail == 0 || *rate < fail {
			fail = *rate
		}
		switch {
		case pass == 0:
			*rate = max(1e6, r.Goodput()*0.9)
		case fail == 0:
			*rate = pass * 1.3
		case fail/pass < 1.05:
			break tries // the edge is found
		default:
			*rate = (pass + fail) / 2
		}
	}
	if pass == 0 {
		return nil, fmt.Errorf("loss ≥ 1%% at every rate tried (last: %.1f%% at %.3f Gbit/s)", last.LostPercent, gbps(last.BitsPerSecond))
	}
	*rate = pass
	return map[string]float64{"udp-port": gbps(best)}, nil
}

// udpCeilingVariants is the yardstick: the builtin driver in one process
// with a paced sender and a sink, and the same sender straight to the
// sink; it tells the forwarder's ceiling from iperf3's own on this
// machine. None without --ceiling.
func (h *harness) udpCeilingVariants() []variant {
	if h.o.ceiling == "" {
		return nil
	}
	var vs []variant
	for _, y := range []struct{ path, label, peer string }{
		{"loopback", "yardstick: paced sender → sink over loopback (udp-ceiling)", "ref"},
		{"published", "yardstick: the same through the builtin driver, in-process, no namespaces (udp-ceiling)", "unroot"},
	} {
		vs = append(vs, variant{label: y.label, peer: y.peer, config: "udp-ceiling", refKey: "yard", benches: []string{"udp-port"},
			run: func(ctx context.Context) (map[string]float64, error) {
				secs := "1"
				if h.o.quick {
					secs = "0.3"
				}
				out, _, err := h.runCmd(ctx, 60*time.Second, true, h.o.ceiling, "-path", y.path, "-rounds", "1", "-secs", secs)
				if err != nil {
					return nil, err
				}
				v, err := strconv.ParseFloat(strings.TrimSpace(out), 64)
				if err != nil {
					return nil, fmt.Errorf("udp-ceiling printed %q: %w", out, err)
				}
				return map[string]float64{"udp-port": v}, nil
			}})
	}
	return vs
}

// udpForwardVariants runs the UDP search through slirp4netns with the
// given port driver, an iperf3 server in the namespace, once per peer;
// each peer keeps its own starting rate from round to round.
func (h *harness) udpForwardVariants(driver string) []variant {
	return h.peerVariants(driver, "slirp4netns", driver, "lo", []string{"udp-port"}, func(p *peer) func(context.Context) (map[string]float64, error) {
		rate := 1e9
		return func(ctx context.Context) (map[string]float64, error) {
			s, hp, err := h.forward(ctx, p, driver, "iperf3 -s -p PORT >/dev/null 2>&1", "tcp", "udp")
			if err != nil {
				return nil, err
			}
			defer s.stop(h)
			return h.udpSearch(ctx, &rate, hp)
		}
	})
}

// ---- HTTP through a published port, nginx inside ----

func nginxConf(dir, listen string, inside bool) string {
	user := ""
	if inside {
		user = "user root root;\n"
	}
	return fmt.Sprintf(`%sdaemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile 16384;
pid %[2]s/nginx.pid;
error_log %[2]s/error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path %[2]s/body;
  proxy_temp_path %[2]s/proxy;
  fastcgi_temp_path %[2]s/fastcgi;
  uwsgi_temp_path %[2]s/uwsgi;
  scgi_temp_path %[2]s/scgi;
  keepalive_requests 1000000;
  server {
    listen %[3]s;
    location / { return 200 "ok\n"; }
  }
}
`, user, dir, listen)
}

// nginxInside writes a config for nginx in the namespace listening on port
// and returns the server command.
func (h *harness) nginxInside(driver string, port int) (string, error) {
	dir, err := h.scratch()
	if err != nil {
		return "", err
	}
	// builtin connects to the child's loopback; slirp4netns and pasta
	// deliver to the tap address, so those listen on every address.
	listen := fmt.Sprintf("0.0.0.0:%d", port)
	if driver == "builtin" {
		listen = fmt.Sprintf("127.0.0.1:%d", port)
	}
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, []byte(nginxConf(dir, listen, true)), 0o644); err != nil {
		return "", err
	}
	return fmt.Sprintf("nginx -c %s -p %s/ >%s/out.log 2>&1", conf, dir, dir), nil
}

func (h *harness) wrkAll(ctx context.Context, port int) (map[string]float64, error) {
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	d := fmt.Sprintf("%ds", h.secs())
	res := map[string]float64{}
	runs := []struct {
		id   string
		args []string
	}{
		{"http-close", []string{"-t1", "-c32", "-d" + d, "-H", "Connection: close", url}},
		{"http-keepalive", []string{"-t1", "-c32", "-d" + d, url}},
		{"lat", []string{"-t1", "-c1", "-d" + d, "--latency", url}},
	}
	for _, r := range runs {
		out, _, err := h.runCmd(ctx, h.o.duration+30*time.Second, true, "wrk", r.args...)
		if err != nil {
			return nil, err
		}
		w, err := parse.ParseWrk(out)
		if err != nil {
			return nil, err
		}
		if w.Requests == 0 || w.Errors > w.Requests/10 {
			return nil, fmt.Errorf("wrk %s: %d requests, %d errors: the path does not carry HTTP", r.id, w.Requests, w.Errors)
		}
		if r.id == "lat" {
			res["lat-p50"] = float64(w.P50) / 1e3
			res["lat-p99"] = float64(w.P99) / 1e3
			continue
		}
		res[r.id] = w.RequestsPerSec
	}
	return res, nil
}

func (h *harness) httpGroup() *group {
	ids := []string{"http-close", "http-keepalive", "lat-p50", "lat-p99"}
	g := &group{name: "http", reps: 1, benches: []*report.Bench{
		{ID: "http-close", Title: "New connections per second through a published port (wrk -t1 -c32, Connection: close; nginx inside)", Unit: "connections/s", HigherIsBetter: true},
		{ID: "http-keepalive", Title: "Keep-alive requests per second through a published port (wrk -t1 -c32; nginx inside)", Unit: "requests/s", HigherIsBetter: true},
		{ID: "lat-p50", Title: "Request latency p50 at one connection (wrk -t1 -c1 --latency)", Unit: "µs"},
		{ID: "lat-p99", Title: "Request latency p99 at one connection (wrk -t1 -c1 --latency)", Unit: "µs"},
	}}
	g.variants = append(g.variants, variant{label: "direct (nginx on the host)", peer: "ref", refKey: "direct", benches: ids,
		run: func(ctx context.Context) (map[string]float64, error) {
			port, _, err := h.hostNginx(ctx)
			if err != nil {
				return nil, err
			}
			return h.wrkAll(ctx, port)
		}})
	// Another relay, for scale: haproxy, one thread, between two ports of
	// the host's loopback; it splices large transfers and copies small
	// messages. What it gets of a direct connection is what a relay in
	// user space can get on this machine, namespaces aside.
	hv := variant{label: "haproxy relay on the host (one thread, splice-auto) → nginx on the host", peer: "other", config: "haproxy", refKey: "direct", benches: ids,
		run: func(ctx context.Context) (map[string]float64, error) {
			np, dir, err := h.hostNginx(ctx)
			if err != nil {
				return nil, err
			}
			hp, err := freePort()
			if err != nil {
				return nil, err
			}
			hconf := filepath.Join(dir, "haproxy.cfg")
			if err := os.WriteFile(hconf, []byte(haproxyConf(hp, np)), 0o644); err != nil {
				return nil, err
			}
			if err := h.hostServer(ctx, "haproxy", []string{"-db", "-f", hconf}, hp); err != nil {
				return nil, err
			}
			return h.wrkAll(ctx, hp)
		}}
	if _, err := exec.LookPath("haproxy"); err != nil {
		hv.skip = "haproxy is not installed (bench/run.sh installs it)"
	}
	g.variants = append(g.variants, hv)
	for _, driver := range []string{"builtin", "bypass", "slirp4netns", "implicit"} {
		_, netd := portFlags(driver, 0, 0)
		config := driver
		if driver == "implicit" {
			config = "implicit (pasta)"
		}
		g.variants = append(g.variants, h.peerVariants(config, netd, driver, "direct", ids, func(p *peer) func(context.Context) (map[string]float64, error) {
			return func(ctx context.Context) (map[string]float64, error) {
				s, hp, err := h.nginxSession(ctx, p, driver)
				if err != nil {
					return nil, err
				}
				defer s.stop(h)
				return h.wrkAll(ctx, hp)
			}
		})...)
	}
	g.variants = append(g.variants, h.b4nVariant("bypass", "direct", ids, func(ctx context.Context) (map[string]float64, error) {
		srv, err := h.nginxInside("bypass", 80)
		if err != nil {
			return nil, err
		}
		s, hp, err := h.b4nForward(ctx, srv, 80)
		if err != nil {
			return nil, err
		}
		defer s.stop(h)
		return h.wrkAll(ctx, hp)
	}))
	return g
}

// hostNginx starts nginx on a free port of the host's loopback, with its
// files in a new scratch directory, and returns both.
func (h *harness) hostNginx(ctx context.Context) (int, string, error) {
	dir, err := h.scratch()
	if err != nil {
		return 0, "", err
	}
	port, err := freePort()
	if err != nil {
		return 0, "", err
	}
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, []byte(nginxConf(dir, fmt.Sprintf("127.0.0.1:%d", port), false)), 0o644); err != nil {
		return 0, "", err
	}
	if err := h.hostServer(ctx, "nginx", []string{"-c", conf, "-p", dir + "/"}, port); err != nil {
		return 0, "", err
	}
	return port, dir, nil
}

// haproxyConf relays TCP from 127.0.0.1:listen to 127.0.0.1:server with one
// thread, splicing; maxconn stays low so haproxy fits the test user's
// descriptor limit.
func haproxyConf(listen, server int) string {
	return fmt.Sprintf(`global
  nbthread 1
  maxconn 256
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  option splice-auto
frontend f
  bind 127.0.0.1:%d
  default_backend b
backend b
  server s1 127.0.0.1:%d
`, listen, server)
}

// nginxSession runs nginx inside a launcher behind a published port.
func (h *harness) nginxSession(ctx context.Context, p *peer, driver string) (*session, int, error) {
	hp, err := freePort()
	if err != nil {
		return nil, 0, err
	}
	cp := 80
	if driver == "implicit" {
		cp = hp
	}
	srv, err := h.nginxInside(driver, cp)
	if err != nil {
		return nil, 0, err
	}
	flags, _ := portFlags(driver, hp, cp, "tcp")
	s, err := h.launch(ctx, p, flags, serverFor(driver, srv, cp, "tcp"))
	if err != nil {
		return nil, 0, err
	}
	if driver == "bypass" {
		if err := h.bypassListening(ctx, hp, 15*time.Second); err != nil {
			s.stop(h)
			return nil, 0, err
		}
	}
	if driver == "implicit" {
		if err := h.hostListening(ctx, hp, 15*time.Second); err != nil {
			s.stop(h)
			return nil, 0, err
		}
	}
	return s, hp, nil
}

// ---- namespace → host, per network driver and MTU ----

func (h *harness) outGroup() *group {
	g := &group{name: "out", reps: 1, benches: []*report.Bench{
		{ID: "tcp-out", Title: "TCP namespace → host through the network driver (iperf3 -c gateway inside, server on host loopback)", Unit: "Gbit/s", HigherIsBetter: true},
		{ID: "cpu-tcp-out", Title: "Launcher + helper CPU per GB moved namespace → host", Unit: "CPU s/GB",
			Note: "utime+stime of every launcher and helper process (iperf3 excluded) over the transfer, from /proc/PID/stat."},
	}}
	// What --bypass can reach at best: the host's own loopback.
	g.variants = append(g.variants, variant{label: "host loopback", peer: "ref", refKey: "lo", benches: []string{"tcp-out"},
		run: func(ctx context.Context) (map[string]float64, error) {
			port, err := h.hostIperf(ctx)
			if err != nil {
				return nil, err
			}
			r, err := h.iperfClient(ctx, true, "", "-c", "127.0.0.1", "-p", strconv.Itoa(port), "-t", strconv.Itoa(h.secs()), "-J")
			if err != nil {
				return nil, err
			}
			return map[string]float64{"tcp-out": gbps(r.Goodput())}, nil
		}})
	for _, mtu := range []int{1500, 65520} {
		mtu := mtu
		g.variants = append(g.variants, variant{label: fmt.Sprintf("veth pair, MTU %d (root)", mtu), peer: "ref", refKey: fmt.Sprintf("veth%d", mtu), benches: []string{"tcp-out"},
			run: func(ctx context.Context) (map[string]float64, error) {
				r, err := h.vethIperf(ctx, mtu, true)
				if err != nil {
					return nil, err
				}
				return map[string]float64{"tcp-out": gbps(r.Goodput())}, nil
			}})
		for _, netd := range []string{"slirp4netns", "slirp4netns · bypass", "pasta", "gvisor-tap-vsock", "netstack"} {
			netd, port, ref := netd, "", fmt.Sprintf("veth%d", mtu)
			launchFlags := []string{"--net=" + netd, fmt.Sprintf("--mtu=%d", mtu)}
			if base, ok := strings.CutSuffix(netd, " · bypass"); ok {
				// The gateway is the host's loopback here (no
				// --disable-host-loopback): --bypass connects there itself.
				netd, port, ref = base, "bypass", "lo"
				launchFlags = []string{"--net=" + base, fmt.Sprintf("--mtu=%d", mtu), "--bypass"}
			}
			config := fmt.Sprintf("%s, MTU %d", netd, mtu)
			if port == "bypass" {
				config = fmt.Sprintf("%s · bypass, MTU %d", netd, mtu)
			}
			g.variants = append(g.variants, h.peerVariants(config, netd, port, ref, []string{"tcp-out", "cpu-tcp-out"}, func(p *peer) func(context.Context) (map[string]float64, error) {
				return func(ctx context.Context) (map[string]float64, error) {
					port, err := h.hostIperf(ctx)
					if err != nil {
						return nil, err
					}
					// The gateway differs by driver (10.0.2.2 slirp4netns and
					// pasta, 10.0.2.1 gvisor-tap-vsock and netstack): take the
					// default route's.
					inner := fmt.Sprintf(`touch DIR/ready; while [ ! -e DIR/go ]; do sleep 0.01; done; ip -4 route show default | { read _ _ gw _; echo $gw >DIR/gw; iperf3 -c $gw -p %d -t %d -J >DIR/out.json 2>&1; }; touch DIR/done; sleep 3600`,
						port, h.secs())
					s, err := h.launch(ctx, p, launchFlags, inner)
					if err != nil {
						return nil, err
					}
					defer s.stop(h)
					return h.tcpOutResult(ctx, s, func(err error) error {
						gw, _ := os.ReadFile(filepath.Join(s.dir, "gw"))
						return fmt.Errorf("iperf3 inside to the gateway %q: %w", strings.TrimSpace(string(gw)), err)
					})
				}
			})...)
		}
	}
	g.variants = append(g.variants, h.b4nOut())
	return g
}

// b4nOut is namespace → host with bypass4netns: iperf3 in the container
// connects to a host address outside its --ignore list (it refuses the
// host's loopback by design), which bypass4netns connects from the host.
func (h *harness) b4nOut() variant {
	return h.b4nVariant("slirp4netns · bypass, MTU 65520", "lo", []string{"tcp-out", "cpu-tcp-out"}, func(ctx context.Context) (map[string]float64, error) {
		if err := h.b4nEgress(ctx); err != nil {
			return nil, err
		}
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		if err := h.hostServerAt(ctx, b4nEgressAddr, port); err != nil {
			return nil, err
		}
		s, err := h.b4nStart(ctx, 0, 0, fmt.Sprintf(`while [ ! -e DIR/go ]; do sleep 0.01; done; iperf3 -c %s -p %d -t %d -J >DIR/out.json 2>&1; touch DIR/done`,
			b4nEgressAddr, port, h.secs()))
		if err != nil {
			return nil, err
		}
		defer s.stop(h)
		return h.tcpOutResult(ctx, s, func(err error) error {
			return fmt.Errorf("iperf3 in the container to %s: %w", b4nEgressAddr, err)
		})
	})
}

// tcpOutResult runs a namespace → host iperf3 client that waits in s for
// DIR/go and writes DIR/out.json then DIR/done: it signals go, waits for
// done, and returns the goodput and the host CPU seconds per GB moved.
// parseFailed wraps the error when out.json is not iperf3's report.
func (h *harness) tcpOutResult(ctx context.Context, s *session, parseFailed func(error) error) (map[string]float64, error) {
	a := cpuTicks()
	if err := os.WriteFile(filepath.Join(s.dir, "go"), nil, 0o644); err != nil {
		return nil, err
	}
	if err := s.waitFile(ctx, "done", h.o.duration+30*time.Second); err != nil {
		return nil, err
	}
	b := cpuTicks()
	out, _ := os.ReadFile(filepath.Join(s.dir, "out.json"))
	r, err := parse.ParseIperf3(out)
	if err != nil {
		return nil, parseFailed(err)
	}
	return map[string]float64{"tcp-out": gbps(r.Goodput()), "cpu-tcp-out": cpuSeconds(a, b) / (r.Bytes / 1e9)}, nil
}

// ---- memory ----

func (h *harness) memGroup() *group {
	g := &group{name: "mem", reps: 1, benches: []*report.Bench{
		{ID: "pss-idle", Title: "Memory of launcher + helpers, idle with one published port (PSS)", Unit: "MB",
			Note: "Sum of Pss from /proc/PID/smaps_rollup over every launcher and helper process (nginx excluded), 1 s after ready."},
		{ID: "pss-1000", Title: "Memory of launcher + helpers with 1,000 open connections through the port (PSS)", Unit: "MB"},
	}}
	// Not the slirp4netns port driver: its hostfwd accepts a few connections
	// a second here, so 1,000 do not open in time with any peer.
	configs := []struct{ net, port string }{
		{"slirp4netns", "builtin"}, {"pasta", "implicit"},
		{"netstack", "builtin"}, {"gvisor-tap-vsock", "gvisor-tap-vsock"},
	}
	for _, c := range configs {
		c := c
		config := fmt.Sprintf("%s + %s port", c.net, c.port)
		g.variants = append(g.variants, h.peerVariants(config, c.net, c.port, "", []string{"pss-idle", "pss-1000"}, func(p *peer) func(context.Context) (map[string]float64, error) {
			return func(ctx context.Context) (map[string]float64, error) {
				s, hp, err := h.memSession(ctx, p, c.net, c.port)
				if err != nil {
					return nil, err
				}
				defer s.stop(h)
				time.Sleep(time.Second)
				idle, err := pss(launcherProcs())
				if err != nil {
					return nil, err
				}
				conns, err := openConns(ctx, hp, 1000)
				defer func() {
					for _, c := range conns {
						c.Close()
					}
				}()
				if err != nil {
					return nil, err
				}
				time.Sleep(time.Second)
				busy, err := pss(launcherProcs())
				if err != nil {
					return nil, err
				}
				if s.exited() {
					return nil, fmt.Errorf("launcher exited during the measurement (%v): %s", s.err, tail(s.stderr.String(), 3))
				}
				if e := s.stderr.String(); strings.Contains(e, "exited unexpectedly") || strings.Contains(e, "restarted") {
					return nil, fmt.Errorf("a helper exited during the measurement: %s", tail(e, 3))
				}
				return map[string]float64{"pss-idle": float64(idle) / 1e6, "pss-1000": float64(busy) / 1e6}, nil
			}
		})...)
	}
	return g
}

func (h *harness) memSession(ctx context.Context, p *peer, netd, port string) (*session, int, error) {
	if port != "builtin" || netd == "slirp4netns" {
		return h.nginxSession(ctx, p, port)
	}
	// builtin on another network driver (unroot's netstack).
	srv, err := h.nginxInside("builtin", 80)
	if err != nil {
		return nil, 0, err
	}
	hp, err := freePort()
	if err != nil {
		return nil, 0, err
	}
	flags := []string{"--net=" + netd, "--disable-host-loopback", "--port-driver=builtin", "-p", fmt.Sprintf("127.0.0.1:%d:80/tcp", hp)}
	s, err := h.launch(ctx, p, flags, serverInside(srv, 80, "tcp"))
	return s, hp, err
}

// openConns opens n TCP connections to 127.0.0.1:port and checks, with one
// request on the last, that they reach the server.
func openConns(ctx context.Context, port, n int) ([]net.Conn, error) {
	var conns []net.Conn
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	// A forwarder that accepts slowly must not stall the suite.
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; i < n; i++ {
		if ctx.Err() != nil {
			return conns, ctx.Err()
		}
		if time.Now().After(deadline) {
			return conns, fmt.Errorf("only %d of %d connections opened in 30 s", i, n)
		}
		c, err := net.DialTimeout("tcp4", addr, 2*time.Second)
		if err != nil {
			return conns, fmt.Errorf("open connection %d of %d: %w", i+1, n, err)
		}
		conns = append(conns, c)
	}
	last := conns[len(conns)-1]
	_ = last.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := last.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		return conns, fmt.Errorf("request on connection %d: %w", n, err)
	}
	buf := make([]byte, 64)
	if _, err := last.Read(buf); err != nil {
		return conns, fmt.Errorf("with %d connections open, the last got no answer: %w", n, err)
	}
	return conns, nil
}

// ---- facts about the run ----

func machine() []report.KV {
	kv := []report.KV{}
	cpu := "?"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				cpu = strings.TrimSpace(strings.SplitN(l, ":", 2)[1])
				break
			}
		}
	}
	kv = append(kv, report.KV{Key: "CPU", Value: fmt.Sprintf("%s, %d CPUs online", cpu, runtime.NumCPU())})
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		kv = append(kv, report.KV{Key: "memory", Value: strings.Join(strings.Fields(strings.SplitN(string(b), "\n", 2)[0])[1:], " ")})
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kv = append(kv, report.KV{Key: "kernel", Value: strings.TrimSpace(string(b))})
	}
	if b, err := os.ReadFile("/etc/os-release"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "PRETTY_NAME="); ok {
				kv = append(kv, report.KV{Key: "OS", Value: strings.Trim(v, `"`)})
			}
		}
	}
	kv = append(kv, report.KV{Key: "load average at start", Value: loadavg()})
	return kv
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func (h *harness) versions(ctx context.Context) []report.KV {
	var kv []report.KV
	for _, p := range append(h.peers, h.b4n) {
		v := p.version
		if p.missing != "" {
			v = "n/a: " + p.missing
		}
		kv = append(kv, report.KV{Key: p.label + " (" + p.bin + ")", Value: v})
	}
	// Debian's package versions name each tool exactly (pasta itself
	// prints "unknown version").
	for _, pkg := range []string{"slirp4netns", "passt", "uidmap", "iperf3", "wrk", "nginx-light", "haproxy", "iproute2", "rootlesskit"} {
		out, _, err := h.runCmd(ctx, 10*time.Second, false, "dpkg-query", "-W", "-f", "${Version}", pkg)
		v := strings.TrimSpace(out)
		if err != nil || v == "" {
			v = "not installed"
		}
		kv = append(kv, report.KV{Key: "Debian " + pkg, Value: v})
	}
	kv = append(kv, report.KV{Key: "Go (builds unroot)", Value: runtime.Version()})
	if out, _, err := h.runCmd(ctx, 10*time.Second, false, "git", "-C", mustWd(), "log", "-1", "--format=%h %cd %s", "--date=format:%Y-%m-%d %H:%M"); err == nil {
		kv = append(kv, report.KV{Key: "unroot commit", Value: strings.TrimSpace(out)})
	}
	h.cleanup()
	return kv
}

func mustWd() string {
	wd, _ := os.Getwd()
	return wd
}

func (h *harness) method() []string {
	return []string{
		fmt.Sprintf("Every launcher, server and client of a peer runs as the unprivileged user %q with subordinate ids; root only makes the veth reference.", h.o.user),
		fmt.Sprintf("%d round(s); each round runs every variant of a group once in a fixed order (start-up: %d times), so load drift spreads over all variants. iperf3 and wrk runs last %v.", h.o.rounds, map[bool]int{true: 1, false: 4}[h.o.quick], h.o.duration),
		"Start-up is wall time from exec of the launcher running `true` to its exit, measured by the harness.",
		"Port forwarding: the server listens inside the namespace; the client connects to 127.0.0.1:PORT on the host. builtin and slirp4netns run on --net=slirp4netns --mtu=65520; implicit is pasta forwarding the ports it sees (same number on both sides).",
		"Namespace → host: iperf3 inside connects to the gateway (10.0.2.2; 10.0.2.1 for gvisor-tap-vsock), which the driver maps to the host's loopback, where the server listens.",
		"Physical references are measured in the same run: iperf3 over host loopback, iperf3 over a veth pair between two network namespaces made by root, nginx on the host without a forwarder. haproxy relaying between two host ports stands for other user-space relays.",
		"Ratios are of medians. Memory and CPU count every process descended from the launcher except the workload (iperf3, nginx, shells); daemonizing helpers are kept in the tree because the harness is a child subreaper.",
	}
}
