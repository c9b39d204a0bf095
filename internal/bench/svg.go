package bench

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"strconv"
)

// plot is a line chart of one or more series over shared axes that start
// at zero.
type plot struct {
	title, xLabel, yLabel string
	series                []series
}

// series is one named line of a plot.
type series struct {
	name   string
	color  string // an SVG color
	points []point
}

// point is one (x, y) value of a series.
type point struct{ x, y float64 }

// The plot's geometry, in SVG user units (pixels).
const (
	svgWidth, svgHeight = 640, 400
	marginLeft          = 72
	marginRight         = 24
	marginTop           = 40
	marginBottom        = 56
	plotWidth           = svgWidth - marginLeft - marginRight
	plotHeight          = svgHeight - marginTop - marginBottom
	tickLen             = 5
	wantTicks           = 5 // about how many ticks an axis gets
)

// writeSVG draws p as a standalone SVG document.
func (p plot) writeSVG(w io.Writer) error {
	xTicks, yTicks := niceTicks(p.maxX(), wantTicks), niceTicks(p.maxY(), wantTicks)
	sx := scale{max: xTicks[len(xTicks)-1], from: marginLeft, length: plotWidth}
	sy := scale{max: yTicks[len(yTicks)-1], from: marginTop + plotHeight, length: -plotHeight}
	var b bytes.Buffer
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n",
		svgWidth, svgHeight, svgWidth, svgHeight)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", svgWidth, svgHeight)
	text(&b, svgWidth/2, 22, "middle", "font-size=\"14\" font-weight=\"bold\"", p.title)
	p.drawAxes(&b, sx, sy, xTicks, yTicks)
	for _, s := range p.series {
		s.draw(&b, sx, sy)
	}
	p.drawLegend(&b)
	b.WriteString("</svg>\n")
	_, err := w.Write(b.Bytes())
	return err
}

// scale maps data values from 0..max to pixels from..from+length.
type scale struct {
	max, from, length float64
}

func (s scale) at(v float64) float64 {
	if s.max <= 0 {
		return s.from
	}
	return s.from + v/s.max*s.length
}

func (p plot) maxX() float64 { return p.maxOf(func(pt point) float64 { return pt.x }) }
func (p plot) maxY() float64 { return p.maxOf(func(pt point) float64 { return pt.y }) }

func (p plot) maxOf(f func(point) float64) float64 {
	m := 0.0
	for _, s := range p.series {
		for _, pt := range s.points {
			m = math.Max(m, f(pt))
		}
	}
	return m
}

// drawAxes draws both axes with grid lines, ticks, tick labels and the
// axis labels.
func (p plot) drawAxes(b *bytes.Buffer, sx, sy scale, xTicks, yTicks []float64) {
	x0, y0 := sx.at(0), sy.at(0)
	for _, v := range xTicks {
		x := sx.at(v)
		line(b, x, sy.at(sy.max), x, y0, `stroke="#e5e7eb"`)
		line(b, x, y0, x, y0+tickLen, `stroke="black"`)
		text(b, x, y0+tickLen+14, "middle", "", formatTick(v))
	}
	for _, v := range yTicks {
		y := sy.at(v)
		line(b, x0, y, sx.at(sx.max), y, `stroke="#e5e7eb"`)
		line(b, x0-tickLen, y, x0, y, `stroke="black"`)
		text(b, x0-tickLen-4, y+4, "end", "", formatTick(v))
	}
	line(b, x0, y0, sx.at(sx.max), y0, `stroke="black"`)
	line(b, x0, y0, x0, sy.at(sy.max), `stroke="black"`)
	text(b, marginLeft+plotWidth/2, svgHeight-14, "middle", "", p.xLabel)
	fmt.Fprintf(b, `<text x="18" y="%s" text-anchor="middle" transform="rotate(-90 18 %s)">%s</text>`+"\n",
		num(marginTop+plotHeight/2), num(marginTop+plotHeight/2), escape(p.yLabel))
}

// draw draws s as a polyline with a dot at each point.
func (s series) draw(b *bytes.Buffer, sx, sy scale) {
	var pts bytes.Buffer
	for i, pt := range s.points {
		if i > 0 {
			pts.WriteByte(' ')
		}
		fmt.Fprintf(&pts, "%s,%s", num(sx.at(pt.x)), num(sy.at(pt.y)))
	}
	fmt.Fprintf(b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", escape(s.color), pts.String())
	for _, pt := range s.points {
		fmt.Fprintf(b, `<circle cx="%s" cy="%s" r="3" fill="%s"/>`+"\n", num(sx.at(pt.x)), num(sy.at(pt.y)), escape(s.color))
	}
}

// drawLegend lists the series in the top left corner of the plot area.
func (p plot) drawLegend(b *bytes.Buffer) {
	const x, y0, step = marginLeft + 12, marginTop + 14, 18
	if len(p.series) == 0 {
		return
	}
	fmt.Fprintf(b, `<rect x="%d" y="%d" width="%d" height="%d" fill="white" stroke="#d1d5db"/>`+"\n",
		x-6, y0-14, legendWidth(p.series), len(p.series)*step+6)
	for i, s := range p.series {
		y := float64(y0 + i*step)
		line(b, x, y-4, x+24, y-4, fmt.Sprintf(`stroke="%s" stroke-width="2"`, escape(s.color)))
		text(b, x+30, y, "start", "", s.name)
	}
}

// legendWidth guesses the legend box's width from its longest name (about
// 7 units a character at font size 12).
func legendWidth(ss []series) int {
	longest := 0
	for _, s := range ss {
		longest = max(longest, len(s.name))
	}
	return 30 + 7*longest + 12
}

func line(b *bytes.Buffer, x1, y1, x2, y2 float64, attrs string) {
	fmt.Fprintf(b, `<line x1="%s" y1="%s" x2="%s" y2="%s" %s/>`+"\n", num(x1), num(y1), num(x2), num(y2), attrs)
}

func text(b *bytes.Buffer, x, y float64, anchor, attrs, s string) {
	if attrs != "" {
		attrs = " " + attrs
	}
	fmt.Fprintf(b, `<text x="%s" y="%s" text-anchor="%s"%s>%s</text>`+"\n", num(x), num(y), anchor, attrs, escape(s))
}

// num prints a coordinate with at most one decimal.
func num(v float64) string { return strconv.FormatFloat(math.Round(v*10)/10, 'f', -1, 64) }

// escape makes s safe as XML character data or attribute value.
func escape(s string) string {
	var b bytes.Buffer
	xml.EscapeText(&b, []byte(s))
	return b.String()
}

// formatTick prints a tick value without needless digits.
func formatTick(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

// niceTicks returns ticks from 0 to the first one at or above max, about n
// of them, spaced by 1, 2 or 5 times a power of ten.
func niceTicks(max float64, n int) []float64 {
	if max <= 0 || n < 1 {
		return []float64{0, 1}
	}
	step := niceStep(max / float64(n))
	count := int(math.Ceil(max/step - 1e-9))
	ticks := make([]float64, count+1)
	for i := range ticks {
		ticks[i] = roundNoise(float64(i) * step)
	}
	return ticks
}

// roundNoise removes float noise such as 3*0.1 = 0.30000000000000004 by
// keeping 12 significant digits.
func roundNoise(v float64) float64 {
	r, _ := strconv.ParseFloat(strconv.FormatFloat(v, 'g', 12, 64), 64)
	return r
}

// niceStep is 1, 2, 5 or 10 times a power of ten, whichever is nearest
// to raw (on a log scale, roughly).
func niceStep(raw float64) float64 {
	pow := math.Pow(10, math.Floor(math.Log10(raw)))
	switch f := raw / pow; {
	case f < 1.5:
		return pow
	case f < 3:
		return 2 * pow
	case f < 7:
		return 5 * pow
	}
	return 10 * pow
}
