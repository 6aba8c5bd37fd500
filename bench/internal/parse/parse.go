// Package parse reads the output of the tools the benchmark suite drives
// (iperf3 -J, wrk, /proc/PID/stat, /proc/PID/smaps_rollup). These are outside
// input: a tool version that prints something else must give a clear error,
// never a silent zero that would end up in the results as a measurement.
package parse

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Iperf3 is the part of an iperf3 -J report the suite uses.
type Iperf3 struct {
	// Bytes received by the server (TCP) or sent by the client (UDP).
	Bytes float64
	// BitsPerSecond as received (TCP); for UDP the sending rate.
	BitsPerSecond float64
	// UDP is set for -u runs; LostPercent is then the receiver's loss.
	UDP         bool
	LostPercent float64
}

// Goodput is the rate that arrived: for UDP the sending rate less the loss.
func (r Iperf3) Goodput() float64 {
	if r.UDP {
		return r.BitsPerSecond * (1 - r.LostPercent/100)
	}
	return r.BitsPerSecond
}

type iperfSum struct {
	Bytes         *float64 `json:"bytes"`
	BitsPerSecond *float64 `json:"bits_per_second"`
	LostPercent   *float64 `json:"lost_percent"`
	Packets       *float64 `json:"packets"`
}

type iperfDoc struct {
	Start struct {
		TestStart struct {
			Protocol string `json:"protocol"`
		} `json:"test_start"`
	} `json:"start"`
	End struct {
		Sum         *iperfSum `json:"sum"`
		SumSent     *iperfSum `json:"sum_sent"`
		SumReceived *iperfSum `json:"sum_received"`
	} `json:"end"`
	Error string `json:"error"`
}

// ParseIperf3 reads an iperf3 -J report. Text around the JSON object (a
// launcher's own log lines on the same stream) is ignored.
func ParseIperf3(out []byte) (Iperf3, error) {
	i, j := bytes.IndexByte(out, '{'), bytes.LastIndexByte(out, '}')
	if i < 0 || j < i {
		return Iperf3{}, fmt.Errorf("parse iperf3 report: no JSON object in %d bytes of output (was iperf3 run with -J?)", len(out))
	}
	var d iperfDoc
	if err := json.Unmarshal(out[i:j+1], &d); err != nil {
		return Iperf3{}, fmt.Errorf("parse iperf3 report: %w", err)
	}
	if d.Error != "" {
		return Iperf3{}, fmt.Errorf("iperf3: %s", d.Error)
	}
	r := Iperf3{UDP: strings.EqualFold(d.Start.TestStart.Protocol, "UDP")}
	var s *iperfSum
	switch {
	case r.UDP && d.End.SumReceived != nil && d.End.SumReceived.LostPercent != nil:
		s = d.End.SumReceived
		if d.End.SumSent != nil && d.End.SumSent.BitsPerSecond != nil {
			// Newer iperf3 reports both sides; keep the sender rate so
			// Goodput subtracts the loss exactly once.
			r.BitsPerSecond = *d.End.SumSent.BitsPerSecond
		}
	case r.UDP:
		s = d.End.Sum
	default:
		s = d.End.SumReceived
	}
	if s == nil || s.Bytes == nil || s.BitsPerSecond == nil {
		return Iperf3{}, errors.New("parse iperf3 report: end summary missing (the test did not finish)")
	}
	r.Bytes = *s.Bytes
	if r.BitsPerSecond == 0 {
		r.BitsPerSecond = *s.BitsPerSecond
	}
	if r.UDP {
		if s.LostPercent == nil {
			return Iperf3{}, errors.New("parse iperf3 report: UDP summary has no lost_percent")
		}
		r.LostPercent = *s.LostPercent
	}
	if bad(r.Bytes) || bad(r.BitsPerSecond) || bad(r.LostPercent) || r.LostPercent > 100 {
		return Iperf3{}, fmt.Errorf("parse iperf3 report: implausible summary (bytes %v, bits/s %v, loss %v%%)", r.Bytes, r.BitsPerSecond, r.LostPercent)
	}
	return r, nil
}

func bad(f float64) bool { return f < 0 || math.IsNaN(f) || math.IsInf(f, 0) }

// Wrk is the part of wrk's text report the suite uses.
type Wrk struct {
	Requests       int64
	RequestsPerSec float64
	// Errors counts socket errors and non-2xx/3xx answers.
	Errors int64
	// P50 and P99 are set only when wrk ran with --latency.
	P50, P99 time.Duration
}

// ParseWrk reads wrk's report from stdout.
func ParseWrk(out string) (Wrk, error) {
	var w Wrk
	var haveRPS, haveReq bool
	inDist := false
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		switch {
		case f[0] == "Latency" && len(f) > 1 && f[1] == "Distribution":
			inDist = true
			continue
		case inDist && len(f) == 2 && strings.HasSuffix(f[0], "%"):
			d, err := parseWrkDuration(f[1])
			if err != nil {
				return Wrk{}, fmt.Errorf("parse wrk latency %q: %w", line, err)
			}
			switch f[0] {
			case "50%", "50.000%":
				w.P50 = d
			case "99%", "99.000%":
				w.P99 = d
			}
			continue
		}
		inDist = false
		switch {
		case f[0] == "Requests/sec:" && len(f) == 2:
			v, err := strconv.ParseFloat(f[1], 64)
			if err != nil || bad(v) {
				return Wrk{}, fmt.Errorf("parse wrk %q: not a rate", line)
			}
			w.RequestsPerSec, haveRPS = v, true
		case len(f) >= 3 && f[1] == "requests" && f[2] == "in":
			n, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil || n < 0 {
				return Wrk{}, fmt.Errorf("parse wrk %q: not a count", line)
			}
			w.Requests, haveReq = n, true
		case f[0] == "Socket" && len(f) > 1 && f[1] == "errors:":
			// "Socket errors: connect 0, read 0, write 0, timeout 0"
			for k := 3; k < len(f); k += 2 {
				n, err := strconv.ParseInt(strings.TrimSuffix(f[k], ","), 10, 64)
				if err != nil || n < 0 {
					return Wrk{}, fmt.Errorf("parse wrk %q: not a count", line)
				}
				w.Errors += n
			}
		case f[0] == "Non-2xx" && len(f) >= 5:
			n, err := strconv.ParseInt(f[len(f)-1], 10, 64)
			if err != nil || n < 0 {
				return Wrk{}, fmt.Errorf("parse wrk %q: not a count", line)
			}
			w.Errors += n
		}
	}
	if !haveRPS || !haveReq {
		return Wrk{}, errors.New("parse wrk report: no \"Requests/sec\" or request count (did wrk fail to connect?)")
	}
	return w, nil
}

// parseWrkDuration reads wrk's units: 12.34us, 1.20ms, 2.00s, 1.00m.
func parseWrkDuration(s string) (time.Duration, error) {
	units := []struct {
		suf string
		mul float64
	}{{"us", 1e3}, {"ms", 1e6}, {"s", 1e9}, {"m", 60e9}, {"h", 3600e9}}
	for _, u := range units {
		if num, ok := strings.CutSuffix(s, u.suf); ok {
			v, err := strconv.ParseFloat(num, 64)
			if err != nil || bad(v) || v > 1e6 {
				return 0, fmt.Errorf("bad number %q", num)
			}
			return time.Duration(v * u.mul), nil
		}
	}
	return 0, fmt.Errorf("unknown unit in %q", s)
}

// Stat is the part of /proc/PID/stat the suite uses.
type Stat struct {
	Comm string
	// State is the one-letter state: R, S, D, Z…
	State string
	PPid  int
	// UTime and STime are in clock ticks.
	UTime, STime uint64
}

// ParseStat reads /proc/PID/stat. The command name is in parentheses and may
// itself hold spaces and parentheses, so the fields are counted from the last ')'.
func ParseStat(s string) (Stat, error) {
	i, j := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if i < 0 || j < i {
		return Stat{}, errors.New("parse /proc/PID/stat: no (comm)")
	}
	f := strings.Fields(s[j+1:])
	// After comm: state(3) ppid(4) … utime(14) stime(15).
	if len(f) < 13 {
		return Stat{}, fmt.Errorf("parse /proc/PID/stat: %d fields after comm, want at least 13", len(f))
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		return Stat{}, fmt.Errorf("parse /proc/PID/stat ppid %q: %w", f[1], err)
	}
	ut, err := strconv.ParseUint(f[11], 10, 64)
	if err != nil {
		return Stat{}, fmt.Errorf("parse /proc/PID/stat utime %q: %w", f[11], err)
	}
	st, err := strconv.ParseUint(f[12], 10, 64)
	if err != nil {
		return Stat{}, fmt.Errorf("parse /proc/PID/stat stime %q: %w", f[12], err)
	}
	return Stat{Comm: s[i+1 : j], State: f[0], PPid: ppid, UTime: ut, STime: st}, nil
}

// ParsePss returns the Pss line of /proc/PID/smaps_rollup in bytes.
func ParsePss(s string) (int64, error) {
	for _, line := range strings.Split(s, "\n") {
		f := strings.Fields(line)
		if len(f) == 3 && f[0] == "Pss:" && f[2] == "kB" {
			n, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil || n < 0 {
				return 0, fmt.Errorf("parse smaps_rollup %q: not a size", line)
			}
			if n > math.MaxInt64/1024 {
				return 0, fmt.Errorf("parse smaps_rollup %q: too large for bytes in 64 bits", line)
			}
			return n * 1024, nil
		}
	}
	return 0, errors.New("parse smaps_rollup: no \"Pss: N kB\" line (kernel older than 4.14?)")
}

// SnapshotDate finds the upstream snapshot date in a Debian version of a
// package built from git, like passt's "0.0~git20230309.7c7625d-1", and
// returns it as the number 20230309.
func SnapshotDate(version string) (int, bool) {
	i := strings.Index(version, "git")
	if i < 0 || len(version) < i+11 {
		return 0, false
	}
	d := version[i+3 : i+11]
	for _, c := range d {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	n, err := strconv.Atoi(d)
	if err != nil || n < 19700101 {
		return 0, false
	}
	return n, true
}
