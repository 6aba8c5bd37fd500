package report

import (
	"fmt"
	"html"
	"strings"
)

// Colours per peer; unroot stands out, the references are neutral.
var peerColor = map[string]string{
	"unroot": "#e4572e",
	"rk3":    "#2e86de",
	"rk1":    "#8e9aaf",
	"other":  "#c9a227",
	"b4n":    "#8e44ad",
	"ref":    "#3a9d5d",
}

const (
	panelW   = 760
	labelW   = 250
	barW     = 270
	rowH     = 18
	panelTop = 40
	cols     = 2
)

// SVG draws one panel per benchmark: a bar for each variant's median with a
// whisker from min to max and the figure written beside it, so the chart
// reads without the table.
func SVG(r *Results) string {
	type panel struct {
		b *Bench
		h int
	}
	var ps []panel
	for _, b := range r.Benchmarks {
		ps = append(ps, panel{b, panelTop + rowH*len(b.Rows) + 16})
	}
	// Lay panels out in columns, each column filled top to bottom in order.
	colY := make([]int, cols)
	header := 70
	for i := range colY {
		colY[i] = header
	}
	var body strings.Builder
	for i, p := range ps {
		c := i % cols
		x, y := c*panelW+10, colY[c]
		colY[c] += p.h
		drawPanel(&body, p.b, x, y)
	}
	height := 0
	for _, y := range colY {
		height = max(height, y)
	}
	var s strings.Builder
	fmt.Fprintf(&s, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="DejaVu Sans, Arial, sans-serif" font-size="11">`+"\n",
		cols*panelW+20, height+10, cols*panelW+20, height+10)
	fmt.Fprintf(&s, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	mode := ""
	if r.Quick {
		mode = " — QUICK MODE, figures not comparable"
	}
	fmt.Fprintf(&s, `<text x="10" y="22" font-size="16" font-weight="bold">unroot vs RootlessKit, same machine, same run (%s, median of %d round(s); whisker = min–max)%s</text>`+"\n",
		r.Started.UTC().Format("2006-01-02"), r.Rounds, html.EscapeString(mode))
	lx := 10
	for _, p := range []string{"unroot", "rk3", "rk1", "b4n", "other", "ref"} {
		fmt.Fprintf(&s, `<rect x="%d" y="36" width="12" height="12" fill="%s"/><text x="%d" y="46">%s</text>`+"\n", lx, peerColor[p], lx+16, html.EscapeString(PeerNames[p]))
		lx += 30 + 7*len(PeerNames[p])
	}
	s.WriteString(body.String())
	s.WriteString("</svg>\n")
	return s.String()
}

func drawPanel(s *strings.Builder, b *Bench, x, y int) {
	better := "lower is better"
	if b.HigherIsBetter {
		better = "higher is better"
	}
	fmt.Fprintf(s, `<text x="%d" y="%d" font-size="13" font-weight="bold">%s</text>`+"\n", x, y+14, html.EscapeString(trim(b.Title, 105)))
	fmt.Fprintf(s, `<text x="%d" y="%d" fill="#555">%s, %s</text>`+"\n", x, y+28, html.EscapeString(b.Unit), better)
	top := 0.0
	for _, r := range b.Rows {
		if st := r.Summary(); st.N > 0 {
			top = max(top, st.Max)
		}
	}
	if top == 0 {
		top = 1
	}
	bx := x + labelW
	for i, r := range b.Rows {
		ry := y + panelTop + i*rowH
		fmt.Fprintf(s, `<text x="%d" y="%d" text-anchor="end">%s</text>`+"\n", bx-6, ry+12, html.EscapeString(trim(r.Label, 44)))
		st := r.Summary()
		if st.N == 0 {
			why := "n/a (failed)"
			if r.Unsupported {
				why = "n/a (unsupported)"
			}
			fmt.Fprintf(s, `<text x="%d" y="%d" fill="#999" font-style="italic">%s</text>`+"\n", bx+4, ry+12, why)
			continue
		}
		w := int(float64(barW) * st.Median / top)
		fmt.Fprintf(s, `<rect x="%d" y="%d" width="%d" height="%d" fill="%s"/>`+"\n", bx, ry+3, max(w, 1), rowH-6, peerColor[r.Peer])
		x0, x1 := bx+int(float64(barW)*st.Min/top), bx+int(float64(barW)*st.Max/top)
		fmt.Fprintf(s, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black" stroke-width="1"/>`+"\n", x0, ry+9, x1, ry+9)
		txt := Format(st.Median)
		if ref := b.Ref(r); ref != nil {
			if v, ok := Ratio(r, ref); ok {
				txt += fmt.Sprintf("  (%.2f× ref)", v)
			}
		}
		if rk := peerRow(b, r, "rk3"); rk != nil {
			if v, ok := Ratio(r, rk); ok {
				txt += fmt.Sprintf("  %.2f× RK3", v)
			}
		}
		fmt.Fprintf(s, `<text x="%d" y="%d">%s</text>`+"\n", bx+max(w, x1-bx)+6, ry+12, html.EscapeString(txt))
	}
}

func trim(s string, n int) string {
	if len([]rune(s)) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}
