package bench

import (
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"
)

// table is a text table whose first `left` columns are aligned left and
// the others right.
type table struct {
	header []string
	left   int
	rows   []tableRow
}

// tableRow is one row: cells, or a first cell and a note written across
// the other columns.
type tableRow struct {
	cells []string
	note  string
}

// colSep separates columns.
const colSep = "  "

// write prints t with every column as wide as its widest cell.
func (t table) write(w io.Writer) error {
	widths := t.widths()
	var b strings.Builder
	t.line(&b, t.header, widths)
	for _, r := range t.rows {
		if r.note != "" {
			fmt.Fprintf(&b, "%s%s%s\n", pad(r.cells[0], widths[0], true), colSep, r.note)
			continue
		}
		t.line(&b, r.cells, widths)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func (t table) widths() []int {
	widths := make([]int, len(t.header))
	grow := func(cells []string) {
		for i, c := range cells {
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	grow(t.header)
	for _, r := range t.rows {
		if r.note == "" {
			grow(r.cells)
		} else {
			grow(r.cells[:1])
		}
	}
	return widths
}

func (t table) line(b *strings.Builder, cells []string, widths []int) {
	parts := make([]string, len(cells))
	for i, c := range cells {
		parts[i] = pad(c, widths[i], i < t.left)
	}
	b.WriteString(strings.TrimRight(strings.Join(parts, colSep), " "))
	b.WriteByte('\n')
}

// pad pads s with spaces to width, on the right if left, else on the left.
func pad(s string, width int, left bool) string {
	fill := strings.Repeat(" ", max(0, width-utf8.RuneCountInString(s)))
	if left {
		return s + fill
	}
	return fill + s
}

// result is the outcome of every round of one workload.
type result struct {
	name        string
	rounds      []round
	unsupported string // amber's error line, if it cannot do the workload yet
}

// resultsTable lays out results: for each workload a "best" and a
// "median" row, or one "not supported yet" row.
func resultsTable(results []result) table {
	t := table{
		header: []string{"workload", "of N", "dump", "restore", "floor", "restore/floor",
			"floor proc", "image", "dump RSS", "restore RSS"},
		left: 2,
	}
	for _, r := range results {
		if r.unsupported != "" || len(r.rounds) == 0 {
			t.rows = append(t.rows, tableRow{cells: []string{r.name}, note: "not supported yet: " + r.unsupported})
			continue
		}
		s := summarize(r.rounds)
		t.rows = append(t.rows,
			figuresRow(r.name, fmt.Sprintf("best of %d", s.rounds), s.best),
			figuresRow("", "median", s.median))
	}
	return t
}

// figuresRow is the table row of f.
func figuresRow(name, which string, f figures) tableRow {
	return tableRow{cells: []string{
		name, which,
		fmtDuration(f.dump), fmtDuration(f.restore), fmtFloor(f.floor),
		fmtRatio(f.ratio), fmtFloor(f.floorProc),
		fmtBytes(f.image), fmtBytes(f.dumpRSS), fmtBytes(f.restoreRSS),
	}}
}

// tableNotes explains the columns of resultsTable.
const tableNotes = `dump, restore: wall clock of the amber command (fork to reap); RSS: its peak (rusage maxrss).
floor: in-process time of test/bench/floor.c (clock_gettime around its mmap and pread work,
its open and lseek work for files10k; threads and trees have none);
floor proc: the same floor timed as a whole process. restore/floor uses the in-process floor:
best = best restore / best floor, median = median restore / median floor.
image: all files of the images directory.
`

// writeReport prints the results table and what its columns mean.
func writeReport(w io.Writer, results []result) error {
	if err := resultsTable(results).write(w); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "\n%s", tableNotes)
	return err
}

// fmtDuration prints d in milliseconds.
func fmtDuration(d time.Duration) string {
	return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
}

// fmtFloor prints a floor duration ("-" for a workload without one).
func fmtFloor(d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return fmtDuration(d)
}

// fmtBytes prints n in MiB.
func fmtBytes(n int64) string {
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}

// fmtRatio prints a ratio with two decimals ("-" for none).
func fmtRatio(r float64) string {
	if r <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", r)
}

// ofN names row i of a best and median pair over n rounds.
func ofN(i, n int) string {
	if i == 0 {
		return fmt.Sprintf("best of %d", n)
	}
	return "median"
}
