package bench

import (
	"strings"
	"testing"
)

func TestTableAlignment(t *testing.T) {
	tb := table{
		header: []string{"name", "n", "value"},
		left:   1,
		rows: []tableRow{
			{cells: []string{"a", "1", "10.0 ms"}},
			{cells: []string{"longer", "22", "5.0 ms"}},
			{cells: []string{"x"}, note: "a note wider than every column"},
		},
	}
	var b strings.Builder
	if err := tb.write(&b); err != nil {
		t.Fatal(err)
	}
	want := "" +
		"name     n    value\n" +
		"a        1  10.0 ms\n" +
		"longer  22   5.0 ms\n" +
		"x       a note wider than every column\n"
	if b.String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestResultsTable(t *testing.T) {
	results := []result{
		{name: "mem512", rounds: []round{testRound(300, 200, 100, 40<<20), testRound(100, 400, 200, 20<<20)}},
		{name: "threads100", unsupported: "amber: dump pid 7: multi-threaded processes are not supported yet"},
	}
	var b strings.Builder
	if err := writeReport(&b, results); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(b.String(), "\n")
	if len(lines) < 4 {
		t.Fatalf("report too short:\n%s", b.String())
	}
	for i, want := range [][]string{
		{"workload", "of N", "dump", "restore", "floor", "restore/floor", "floor proc", "image", "dump RSS", "restore RSS"},
		{"mem512", "best of 2", "100.0 ms", "200.0 ms", "100.0 ms", "2.00", "105.0 ms", "512.0 MiB", "20.0 MiB", "10.0 MiB"},
		{"median", "200.0 ms", "300.0 ms", "150.0 ms", "2.00", "155.0 ms", "512.0 MiB", "30.0 MiB", "15.0 MiB"},
		{"threads100", "not supported yet: amber: dump pid 7: multi-threaded processes are not supported yet"},
	} {
		for _, cell := range want {
			if !strings.Contains(lines[i], cell) {
				t.Errorf("line %d %q lacks %q", i, lines[i], cell)
			}
		}
	}
	// Right-aligned columns end in the same place on every row.
	end := strings.Index(lines[0], "restore/floor") + len("restore/floor")
	for _, l := range lines[1:3] {
		if l[end-4:end] != "2.00" {
			t.Errorf("ratio column not aligned at %d in %q", end, l)
		}
	}
	if !strings.Contains(b.String(), "in-process") {
		t.Errorf("report does not say which floor figure it shows:\n%s", b.String())
	}
}

func TestFormats(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{fmtDuration(ms(1234) + 560_000), "1234.6 ms"},
		{fmtBytes(3 << 19), "1.5 MiB"},
		{fmtRatio(0.804), "0.80"},
		{fmtRatio(0), "-"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}
