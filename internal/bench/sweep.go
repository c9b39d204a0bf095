package bench

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"
)

// Colors of the plot's lines.
const (
	amberColor = "#d97706"
	floorColor = "#2563eb"
)

// sizePoint is the best restore and floor for one memory size.
type sizePoint struct {
	mib            int
	restore, floor time.Duration
}

// runSweep measures the mem workload at each size in MiB, prints a table
// and draws restore time against size, for amber and the floor, into
// plotPath.
func runSweep(e env, sizes []int, rounds int, out io.Writer, plotPath string) error {
	fmt.Fprintf(out, "\nrestore time against memory size (best of %d):\n", rounds)
	var pts []sizePoint
	for i, w := range sweepWorkloads(sizes) {
		res, err := runWorkload(e, w, rounds, out)
		if err != nil {
			return err
		}
		if res.unsupported != "" {
			return fmt.Errorf("bench: %s: not supported: %s", w.name, res.unsupported)
		}
		s := summarize(res.rounds)
		pts = append(pts, sizePoint{mib: sizes[i], restore: s.best.restore, floor: s.best.floor})
	}
	if err := sweepTable(pts).write(out); err != nil {
		return err
	}
	var b bytes.Buffer
	if err := sweepPlot(pts, rounds).writeSVG(&b); err != nil {
		return err
	}
	if err := os.WriteFile(plotPath, b.Bytes(), 0o644); err != nil {
		return fmt.Errorf("bench: write plot: %w", err)
	}
	fmt.Fprintf(out, "plot written to %s\n", plotPath)
	return nil
}

// sweepTable lays out the sweep's points.
func sweepTable(pts []sizePoint) table {
	t := table{header: []string{"memory", "restore", "floor", "restore/floor"}}
	for _, p := range pts {
		t.rows = append(t.rows, tableRow{cells: []string{
			strconv.Itoa(p.mib) + " MiB", fmtDuration(p.restore), fmtDuration(p.floor),
			fmtRatio(ratio(p.restore, p.floor)),
		}})
	}
	return t
}

// sweepPlot is the restore-vs-size chart of pts.
func sweepPlot(pts []sizePoint, rounds int) plot {
	amber := series{name: "amber restore", color: amberColor}
	floor := series{name: "floor (mmap + pread of the pages image)", color: floorColor}
	for _, p := range pts {
		amber.points = append(amber.points, point{x: float64(p.mib), y: millis(p.restore)})
		floor.points = append(floor.points, point{x: float64(p.mib), y: millis(p.floor)})
	}
	return plot{
		title:  fmt.Sprintf("Restore time against memory size (best of %d)", rounds),
		xLabel: "anonymous memory written (MiB)",
		yLabel: "restore time (ms)",
		series: []series{amber, floor},
	}
}

func millis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
