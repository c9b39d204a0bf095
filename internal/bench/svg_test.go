package bench

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

func TestNiceTicks(t *testing.T) {
	for _, tc := range []struct {
		max  float64
		n    int
		want []float64
	}{
		{1024, 5, []float64{0, 200, 400, 600, 800, 1000, 1200}},
		{430, 5, []float64{0, 100, 200, 300, 400, 500}},
		{1000, 5, []float64{0, 200, 400, 600, 800, 1000}},
		{0.7, 5, []float64{0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7}},
		{0.3, 3, []float64{0, 0.1, 0.2, 0.3}},
		{0, 5, []float64{0, 1}},
	} {
		if got := niceTicks(tc.max, tc.n); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("niceTicks(%v, %d) = %v, want %v", tc.max, tc.n, got, tc.want)
		}
	}
}

// svgCounts parses an SVG document and counts its elements by name.
func svgCounts(t *testing.T, doc []byte) map[string]int {
	t.Helper()
	counts := map[string]int{}
	d := xml.NewDecoder(bytes.NewReader(doc))
	d.Strict = true
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("SVG is not well-formed XML: %v\n%s", err, doc)
		}
		if se, ok := tok.(xml.StartElement); ok {
			if counts[""] == 0 && (se.Name.Local != "svg" || se.Name.Space != "http://www.w3.org/2000/svg") {
				t.Fatalf("root element is %v, want svg in the SVG namespace", se.Name)
			}
			counts[""]++
			counts[se.Name.Local]++
		}
	}
	return counts
}

func TestSweepPlotSVG(t *testing.T) {
	pts := []sizePoint{
		{64, ms(30), ms(25)}, {128, ms(55), ms(50)}, {256, ms(110), ms(95)},
		{512, ms(215), ms(190)}, {1024, ms(430), ms(380)},
	}
	var b bytes.Buffer
	if err := sweepPlot(pts, 3).writeSVG(&b); err != nil {
		t.Fatal(err)
	}
	c := svgCounts(t, b.Bytes())
	if c["svg"] != 1 || c["polyline"] != 2 || c["circle"] != 2*len(pts) {
		t.Errorf("svg %d, polyline %d, circle %d; want 1, 2, %d", c["svg"], c["polyline"], c["circle"], 2*len(pts))
	}
	for _, want := range []string{"amber restore", "floor (mmap", "restore time (ms)", "(MiB)", ">1000<", ">400<"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("SVG lacks %q", want)
		}
	}
}

func TestSVGEscapesText(t *testing.T) {
	p := plot{
		title: `a <b> & "c"`, xLabel: "x<", yLabel: "y&",
		series: []series{{name: "s<1>", color: "red", points: []point{{1, 2}, {3, 4}}}},
	}
	var b bytes.Buffer
	if err := p.writeSVG(&b); err != nil {
		t.Fatal(err)
	}
	svgCounts(t, b.Bytes())
}

func TestSVGEmptyPlot(t *testing.T) {
	var b bytes.Buffer
	if err := (plot{title: "nothing"}).writeSVG(&b); err != nil {
		t.Fatal(err)
	}
	svgCounts(t, b.Bytes())
}
