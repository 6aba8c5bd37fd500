package main

import "github.com/unroot/unroot/bench/internal/report"

// targets checks the goals that issues 2, 3 and 7 set for unroot against
// this run. Every goal is a ratio of medians measured side by side, or an
// absolute memory bound.
func targets(res *report.Results) []report.Target {
	var ts []report.Target
	ratio := func(name, goal, bench, peerA, configA, peerB, configB string, atLeast bool, want float64) {
		t := report.Target{Name: name, Goal: goal, Unit: "×"}
		if b := res.Bench(bench); b != nil {
			a := b.Row(peerA, configA)
			var o *report.Row
			if peerB == "ref" {
				if a != nil {
					o = b.Ref(a)
				}
			} else {
				o = b.Row(peerB, configB)
			}
			if v, ok := report.Ratio(a, o); ok {
				t.Value, t.Have = v, true
				t.Met = (atLeast && v >= want) || (!atLeast && v <= want)
			}
		}
		ts = append(ts, t)
	}
	abs := func(name, goal, bench, peer, config string, most float64) {
		t := report.Target{Name: name, Goal: goal, Unit: " MB"}
		if b := res.Bench(bench); b != nil {
			if r := b.Row(peer, config); r != nil && r.Summary().N > 0 {
				t.Value, t.Have = r.Summary().Median, true
				t.Met = t.Value <= most
			}
		}
		ts = append(ts, t)
	}
	slirp := "slirp4netns, copy-up, pidns"
	ratio("#2 start-up, slirp4netns + copy-up + pidns: unroot ÷ RK v3", "≤ 0.2×", "startup", "unroot", slirp, "rk3", slirp, false, 0.2)
	ratio("#3 TCP through builtin port: unroot ÷ RK v3", "≥ 1.2×", "tcp-port", "unroot", "builtin", "rk3", "builtin", true, 1.2)
	ratio("#3 TCP through builtin port: unroot ÷ host loopback", "≥ 0.8×", "tcp-port", "unroot", "builtin", "ref", "", true, 0.8)
	ratio("#3 new connections/s, builtin: unroot ÷ RK v3", "≥ 2.5×", "http-close", "unroot", "builtin", "rk3", "builtin", true, 2.5)
	ratio("#3 keep-alive requests/s, builtin: unroot ÷ direct", "≥ 0.75×", "http-keepalive", "unroot", "builtin", "ref", "", true, 0.75)
	abs("#3 PSS idle, one published port (slirp4netns + builtin): unroot", "≤ 15 MB", "pss-idle", "unroot", "slirp4netns + builtin port", 15)
	ratio("#7 namespace → host, MTU 65520: unroot netstack ÷ slirp4netns (RK v3)", "≥ 1.5×", "tcp-out", "unroot", "netstack, MTU 65520", "rk3", "slirp4netns, MTU 65520", true, 1.5)
	ratio("#7 namespace → host, MTU 1500: unroot netstack ÷ slirp4netns (RK v3)", "≥ 2×", "tcp-out", "unroot", "netstack, MTU 1500", "rk3", "slirp4netns, MTU 1500", true, 2)
	abs("#7 PSS idle with the netstack driver: unroot", "≤ 25 MB", "pss-idle", "unroot", "netstack + builtin port", 25)
	ratio("#15 new connections/s through a bypassed port: unroot ÷ direct", "≥ 0.9×", "http-close", "unroot", "bypass", "ref", "", true, 0.9)
	ratio("#15 keep-alive requests/s through a bypassed port: unroot ÷ direct", "≥ 0.9×", "http-keepalive", "unroot", "bypass", "ref", "", true, 0.9)
	ratio("#15 TCP through a bypassed port: unroot ÷ host loopback", "≥ 0.95×", "tcp-port", "unroot", "bypass", "ref", "", true, 0.95)
	ratio("#15 UDP through a bypassed port: unroot ÷ host loopback", "≥ 0.9×", "udp-port", "unroot", "bypass", "ref", "", true, 0.9)
	ratio("#15 namespace → host with --bypass, MTU 65520: unroot ÷ host loopback", "≥ 0.9×", "tcp-out", "unroot", "slirp4netns · bypass, MTU 65520", "ref", "", true, 0.9)
	ratio("#15 TCP through a bypassed port: unroot ÷ bypass4netns", "≥ 1×", "tcp-port", "unroot", "bypass", "b4n", "bypass", true, 1)
	ratio("#15 new connections/s through a bypassed port: unroot ÷ bypass4netns", "≥ 1×", "http-close", "unroot", "bypass", "b4n", "bypass", true, 1)
	ratio("#15 keep-alive requests/s through a bypassed port: unroot ÷ bypass4netns", "≥ 1×", "http-keepalive", "unroot", "bypass", "b4n", "bypass", true, 1)
	ratio("#15 namespace → host, bypassed: unroot ÷ bypass4netns", "≥ 1×", "tcp-out", "unroot", "slirp4netns · bypass, MTU 65520", "b4n", "slirp4netns · bypass, MTU 65520", true, 1)
	return ts
}
