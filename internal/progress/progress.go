// Package progress draws a progress bar for long dumps and restores on a
// terminal: bytes done, rate and time left. It draws nothing when its
// output is not a terminal, or for work too small to wait for.
package progress

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// MinBytes is the least work that gets a bar: below it a dump or restore
// is over before a bar would be read.
const MinBytes = 256 << 20

// redraw is how often the bar is drawn at most.
const redraw = 100 * time.Millisecond

// width is the number of cells of the bar itself.
const width = 30

// Bar is one progress bar. A nil *Bar does nothing, so callers need not
// check whether a bar is shown.
type Bar struct {
	mu    sync.Mutex
	w     io.Writer
	label string
	total uint64
	start time.Time
	drawn time.Time
	now   func() time.Time
}

// New returns a bar on standard error for work of total bytes, or nil if
// standard error is not a terminal or the work is small.
func New(label string, total uint64) *Bar {
	if total < MinBytes || !isTerminal(os.Stderr) {
		return nil
	}
	return newBar(os.Stderr, label, total, time.Now)
}

func newBar(w io.Writer, label string, total uint64, now func() time.Time) *Bar {
	return &Bar{w: w, label: label, total: total, start: now(), now: now}
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// Set records that done bytes are done and redraws if it is time to.
func (b *Bar) Set(done uint64) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	t := b.now()
	if t.Sub(b.drawn) < redraw {
		return
	}
	b.drawn = t
	io.WriteString(b.w, "\r"+b.line(min(done, b.total), t.Sub(b.start)))
}

// Done draws the bar full and ends its line.
func (b *Bar) Done() {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	io.WriteString(b.w, "\r"+b.line(b.total, b.now().Sub(b.start))+"\n")
}

// line renders the bar: label, cells, MiB done of total, rate, time left.
func (b *Bar) line(done uint64, elapsed time.Duration) string {
	cells := int(done * width / b.total)
	bar := strings.Repeat("=", cells) + strings.Repeat(" ", width-cells)
	rate := 0.0
	if s := elapsed.Seconds(); s > 0 {
		rate = float64(done) / s
	}
	left := "--"
	if rate > 0 {
		left = fmt.Sprintf("%.1fs", float64(b.total-done)/rate)
	}
	const mib = 1 << 20
	return fmt.Sprintf("%s [%s] %d/%d MiB %.0f MiB/s %s left", b.label, bar, done/mib, b.total/mib, rate/mib, left)
}
