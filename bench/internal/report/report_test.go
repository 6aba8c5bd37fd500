package report

import (
	"encoding/xml"
	"strings"
	"testing"
	"time"
)

func TestSummary(t *testing.T) {
	tests := []struct {
		in   []float64
		want Stats
	}{
		{nil, Stats{}},
		{[]float64{3}, Stats{3, 3, 3, 1}},
		{[]float64{5, 1, 3}, Stats{3, 1, 5, 3}},
		{[]float64{4, 1, 2, 3}, Stats{2.5, 1, 4, 4}},
	}
	for _, tt := range tests {
		r := &Row{Samples: tt.in}
		if got := r.Summary(); got != tt.want {
			t.Errorf("Summary(%v) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

func sample() *Results {
	return &Results{
		Started: time.Date(2026, 11, 28, 17, 0, 0, 0, time.UTC), Finished: time.Date(2026, 11, 28, 17, 20, 0, 0, time.UTC),
		Rounds:  5,
		Machine: []KV{{"kernel", "6.18"}},
		Benchmarks: []*Bench{{
			ID: "tcp", Title: "TCP host→namespace", Unit: "Gbit/s", HigherIsBetter: true,
			Rows: []*Row{
				{Label: "host loopback", Peer: "ref", RefKey: "lo", Samples: []float64{40, 42}},
				{Label: "unroot builtin", Peer: "unroot", Config: "builtin", RefKey: "lo", Samples: []float64{30, 34, 32}},
				{Label: "RK v3 builtin", Peer: "rk3", Config: "builtin", RefKey: "lo", Samples: []float64{16}},
				{Label: "RK 1.1 pasta <x>", Peer: "rk1", Config: "implicit", NA: "no pasta in 1.1", Unsupported: true},
				{Label: "unroot implicit", Peer: "unroot", Config: "implicit", NA: "exit status 1: unknown flag"},
				{Label: "RK v3 implicit", Peer: "rk3", Config: "implicit", NA: "no host listener"},
			},
		}},
	}
}

func TestRatiosAndFailures(t *testing.T) {
	r := sample()
	b := r.Bench("tcp")
	if v, ok := Ratio(b.Row("unroot", "builtin"), b.Row("rk3", "builtin")); !ok || v != 2 {
		t.Errorf("unroot/rk3 = %v %v, want 2", v, ok)
	}
	if v, ok := Ratio(b.Row("unroot", "builtin"), b.Ref(b.Row("unroot", "builtin"))); !ok || v != 32.0/41 {
		t.Errorf("unroot/ref = %v %v, want %v", v, ok, 32.0/41)
	}
	if _, ok := Ratio(b.Row("unroot", "implicit"), b.Row("rk3", "implicit")); ok {
		t.Error("ratio with a missing row must not exist")
	}
	f := r.Failures()
	if len(f) != 1 || !strings.Contains(f[0], "unknown flag") {
		t.Errorf("Failures = %q, want only the failed unroot row (a peer's failure is a finding)", f)
	}
	empty := &Results{Benchmarks: []*Bench{{Title: "UDP", Rows: []*Row{{Label: "RK v3", Peer: "rk3", NA: "hang"}}}}}
	if f := empty.Failures(); len(f) != 1 || !strings.Contains(f[0], "no variant produced a figure") {
		t.Errorf("Failures = %q, want the benchmark without any figure", f)
	}
}

func TestMarkdown(t *testing.T) {
	md := Markdown(sample(), "latest.svg")
	for _, want := range []string{"![chart](latest.svg)", "| unroot builtin | 32.0 | 30.0 | 34.0 | 3 | 0.78× | 2.00× |", "unsupported: no pasta in 1.1", "failed: exit status 1"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
}

func TestSVGIsWellFormed(t *testing.T) {
	s := SVG(sample())
	d := xml.NewDecoder(strings.NewReader(s))
	for {
		_, err := d.Token()
		if err != nil {
			if err.Error() == "EOF" {
				break
			}
			t.Fatalf("SVG is not well-formed XML: %v", err)
		}
	}
	for _, want := range []string{"RK v3 builtin", "2.00× RK3", "n/a (unsupported)", "n/a (failed)", "RK 1.1 pasta &lt;x&gt;"} {
		if !strings.Contains(s, want) {
			t.Errorf("SVG lacks %q", want)
		}
	}
}
