// Package report holds the benchmark results and turns them into the
// Markdown table and the SVG chart committed under bench/results. It knows
// nothing about how figures were measured, so a chart can be redrawn from a
// saved results.json without running anything.
package report

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"time"
)

// Results is one run of the suite.
type Results struct {
	Started, Finished time.Time
	Quick             bool
	Rounds            int
	Machine           []KV // CPU, kernel, nproc, load…
	Versions          []KV // every tool and peer, as it reported itself
	Method            []string
	Benchmarks        []*Bench
	Targets           []Target
	Notes             []string
}

// KV is one labelled fact.
type KV struct{ Key, Value string }

// Bench is one metric measured for several variants.
type Bench struct {
	ID, Title, Unit string
	HigherIsBetter  bool
	// NoRatios: the figures are counts where a ratio means nothing.
	NoRatios bool
	Rows     []*Row
	Note     string
}

// Row is one variant of a benchmark: a peer with a configuration, or a
// physical reference.
type Row struct {
	Label string
	// Peer is "unroot", "rk3", "rk1", "b4n" (bypass4netns), "other" (another kind of program
	// doing the same job, for scale) or "ref".
	Peer string
	// Config names the configuration so rows of different peers can be
	// compared (same Config, different Peer).
	Config string
	// RefKey picks the reference row this row is compared with: the
	// reference row whose RefKey is the same.
	RefKey  string
	Samples []float64
	// NA says why there is no figure: a feature that peer does not have
	// (Unsupported) or a run that failed (the error).
	NA          string
	Unsupported bool
}

// Target is a goal from an issue, checked against this run.
type Target struct {
	Name, Goal string
	Value      float64
	Unit       string
	// Have is false when a figure needed for the target is missing.
	Have, Met bool
}

// Stats of a row's samples.
type Stats struct {
	Median, Min, Max float64
	N                int
}

// Summary returns median, min and max of the samples; N is 0 when there are none.
func (r *Row) Summary() Stats {
	if len(r.Samples) == 0 {
		return Stats{}
	}
	s := append([]float64(nil), r.Samples...)
	sort.Float64s(s)
	n := len(s)
	med := s[n/2]
	if n%2 == 0 {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	return Stats{Median: med, Min: s[0], Max: s[n-1], N: n}
}

// Row returns the row of a peer in a config, or nil.
func (b *Bench) Row(peer, config string) *Row {
	for _, r := range b.Rows {
		if r.Peer == peer && r.Config == config {
			return r
		}
	}
	return nil
}

// Ref returns the reference row for r, or nil.
func (b *Bench) Ref(r *Row) *Row {
	if r.Peer == "ref" || r.RefKey == "" || b.NoRatios {
		return nil
	}
	for _, x := range b.Rows {
		if x.Peer == "ref" && x.RefKey == r.RefKey {
			return x
		}
	}
	return nil
}

// Ratio is a's median over b's, and false when either has no figure.
func Ratio(a, b *Row) (float64, bool) {
	if a == nil || b == nil {
		return 0, false
	}
	sa, sb := a.Summary(), b.Summary()
	if sa.N == 0 || sb.N == 0 || sb.Median == 0 {
		return 0, false
	}
	return sa.Median / sb.Median, true
}

// Bench returns the benchmark with the id, or nil.
func (r *Results) Bench(id string) *Bench {
	for _, b := range r.Benchmarks {
		if b.ID == id {
			return b
		}
	}
	return nil
}

// Failures lists what makes a run fail: a benchmark with no figure at all,
// a reference that could not be measured, or an unroot variant that did not
// run. A peer's own failure (RootlessKit lacking a working feature on this
// machine) is a finding reported as n/a, not a failure of the suite.
func (r *Results) Failures() []string {
	var out []string
	for _, b := range r.Benchmarks {
		any := false
		for _, row := range b.Rows {
			if len(row.Samples) > 0 {
				any = true
			}
			if len(row.Samples) == 0 && !row.Unsupported && (row.Peer == "unroot" || row.Peer == "ref") {
				out = append(out, fmt.Sprintf("%s / %s: %s", b.Title, row.Label, row.NA))
			}
		}
		if !any {
			out = append(out, fmt.Sprintf("%s: no variant produced a figure", b.Title))
		}
	}
	return out
}

// Format prints a figure with three significant digits.
func Format(v float64) string {
	a := math.Abs(v)
	switch {
	case a == 0:
		return "0"
	case a >= 1000:
		return fmt.Sprintf("%.0f", v)
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	case a >= 1:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.3g", v)
	}
}

// PeerNames are the display names of the peers.
var PeerNames = map[string]string{
	"unroot": "unroot",
	"rk3":    "RootlessKit v3.3.0",
	"rk1":    "RootlessKit 1.1.0",
	"other":  "other relay",
	"b4n":    "bypass4netns v0.4.2",
	"ref":    "reference",
}

// Markdown renders the results as bench/results/latest.md.
func Markdown(r *Results, chart string) string {
	var b strings.Builder
	mode := "full"
	if r.Quick {
		mode = "quick (one short round: figures are not comparable)"
	}
	fmt.Fprintf(&b, "# unroot benchmarks\n\n")
	fmt.Fprintf(&b, "Run %s → %s UTC, %s, %d round(s), variants interleaved (A B C … A B C …) in every round.\n\n",
		r.Started.UTC().Format("2006-01-02 15:04"), r.Finished.UTC().Format("15:04"), mode, r.Rounds)
	if chart != "" {
		fmt.Fprintf(&b, "![chart](%s)\n\n", chart)
	}
	b.WriteString("## Machine\n\n| | |\n|---|---|\n")
	for _, kv := range r.Machine {
		fmt.Fprintf(&b, "| %s | %s |\n", kv.Key, esc(kv.Value))
	}
	b.WriteString("\n## Versions\n\n| | |\n|---|---|\n")
	for _, kv := range r.Versions {
		fmt.Fprintf(&b, "| %s | %s |\n", kv.Key, esc(kv.Value))
	}
	if len(r.Targets) > 0 {
		b.WriteString("\n## Goals from the issues\n\n| goal | wanted | measured | |\n|---|---|---|---|\n")
		for _, t := range r.Targets {
			val, ok := "n/a", "–"
			if t.Have {
				val = Format(t.Value) + t.Unit
				ok = "missed"
				if t.Met {
					ok = "met"
				}
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", esc(t.Name), esc(t.Goal), val, ok)
		}
	}
	b.WriteString("\n## Figures\n\nMedian, min and max over the rounds. `×ref` is the median over the physical reference measured in the same run; `×RK3` and `×RK1` are over RootlessKit v3.3.0 and 1.1.0 with the same configuration. n/a: the peer has no such feature (unsupported) or the run failed (the reason follows).\n")
	for _, bench := range r.Benchmarks {
		better := "lower is better"
		if bench.HigherIsBetter {
			better = "higher is better"
		}
		fmt.Fprintf(&b, "\n### %s\n\n%s, %s.", bench.Title, bench.Unit, better)
		if bench.Note != "" {
			fmt.Fprintf(&b, " %s", bench.Note)
		}
		b.WriteString("\n\n| variant | median | min | max | n | ×ref | ×RK3 | ×RK1 |\n|---|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, row := range bench.Rows {
			s := row.Summary()
			if s.N == 0 {
				fmt.Fprintf(&b, "| %s | n/a | | | 0 | | | | \n", esc(row.Label))
				continue
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %d | %s | %s | %s |\n", esc(row.Label),
				Format(s.Median), Format(s.Min), Format(s.Max), s.N,
				ratioCell(row, bench.Ref(row)), ratioCell(row, peerRow(bench, row, "rk3")), ratioCell(row, peerRow(bench, row, "rk1")))
		}
		var na []string
		for _, row := range bench.Rows {
			if row.Summary().N == 0 {
				kind := "failed"
				if row.Unsupported {
					kind = "unsupported"
				}
				na = append(na, fmt.Sprintf("- n/a %s — %s: %s", esc(row.Label), kind, esc(row.NA)))
			}
		}
		if len(na) > 0 {
			b.WriteString("\n" + strings.Join(na, "\n") + "\n")
		}
	}
	if len(r.Method) > 0 {
		b.WriteString("\n## Method\n\n")
		for _, m := range r.Method {
			fmt.Fprintf(&b, "- %s\n", m)
		}
	}
	if len(r.Notes) > 0 {
		b.WriteString("\n## Notes\n\n")
		for _, n := range r.Notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
	}
	return b.String()
}

func peerRow(b *Bench, r *Row, peer string) *Row {
	if r.Peer == peer || r.Peer == "ref" || b.NoRatios {
		return nil
	}
	return b.Row(peer, r.Config)
}

func ratioCell(a, b *Row) string {
	v, ok := Ratio(a, b)
	if !ok {
		return ""
	}
	return fmt.Sprintf("%.2f×", v)
}

func esc(s string) string {
	s = strings.ReplaceAll(s, "|", "\\|")
	return strings.ReplaceAll(s, "\n", " ")
}
