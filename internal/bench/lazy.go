package bench

// The lazy restore workload (lazyN): the mem program with N MiB, dumped
// to local disk and restored on this host with restore --lazy-pages and
// a lazy-pages daemon, beside a plain dump and restore of the same
// program. Each round starts the program twice, once for each restore:
// a restored program's output file has grown since the dump, which a
// second restore of the same images would refuse. With a CRIU binary,
// CRIU does the same next to amber.

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"time"
)

// lazySocket is the socket the lazy-pages daemon listens on, in the
// images directory (CRIU's name).
const lazySocket = "lazy-pages.socket"

// lazyRound is one round of a lazy workload with one tool.
type lazyRound struct {
	dump, restore time.Duration // the plain dump and restore
	lazyRestore   time.Duration // restore --lazy-pages, until the tree runs
	// daemonAllIn is what amber's daemon logs: from taking the first
	// process to the last page in (0: not reported, as by CRIU).
	daemonAllIn time.Duration
	// waited is from the start of restore --lazy-pages to the end of
	// the daemon: what a user waits until every page is in.
	waited time.Duration
}

// runLazy runs rounds of w with each tool, the tools in turns first
// from round to round, and prints the table.
func runLazy(e env, w sizedWorkload, rounds int, out io.Writer) error {
	byTool := map[string][]lazyRound{}
	for i := 1; i <= rounds; i++ {
		for _, t := range e.toolsOfRound(i) {
			dir := filepath.Join(e.workDir, fmt.Sprintf("%s-%s-%d", w.name, t.name, i))
			r, err := lazyRoundOf(e, t, w, dir)
			if err != nil {
				return fmt.Errorf("bench: %s %s round %d (in %s): %w", w.name, t.name, i, dir, err)
			}
			fmt.Fprintf(out, "%s %s round %d/%d: dump %s, restore %s, lazy restore %s, all in %s (daemon), %s after the restore's start\n",
				w.name, t.name, i, rounds, fmtDuration(r.dump), fmtDuration(r.restore), fmtDuration(r.lazyRestore),
				fmtFloor(r.daemonAllIn), fmtDuration(r.waited))
			byTool[t.name] = append(byTool[t.name], r)
			if err := os.RemoveAll(dir); err != nil {
				return fmt.Errorf("bench: %w", err)
			}
		}
	}
	fmt.Fprintln(out)
	return writeLazy(out, w, e.tools(), byTool)
}

// lazyRoundOf runs one round of w with t in dir: a plain dump and
// restore of one mem program, then a dump and lazy restore of another.
func lazyRoundOf(e env, t tool, w sizedWorkload, dir string) (r lazyRound, err error) {
	mem := memWorkload(w.name, w.mib)
	plain, err := startDumped(e, t, mem, filepath.Join(dir, "plain"))
	if err != nil {
		return r, err
	}
	r.dump = plain.dump.wall
	rt, err := restoreDetached(t, plain.dir, "restore", plain.images, plain.pid)
	if err != nil {
		killGroup(plain.pid, cleanTimeout)
		return r, fmt.Errorf("plain restore: %w", err)
	}
	r.restore = rt.wall
	if err := verify(plain.pid, plain.out); err != nil {
		return r, fmt.Errorf("plain restore: %w", err)
	}
	lazy, err := startDumped(e, t, mem, filepath.Join(dir, "lazy"))
	if err != nil {
		return r, err
	}
	if err := lazyRestore(t, lazy.dir, lazy.images, lazy.pid, &r); err != nil {
		killGroup(lazy.pid, cleanTimeout)
		return r, fmt.Errorf("lazy restore: %w", err)
	}
	if err := verify(lazy.pid, lazy.out); err != nil {
		return r, fmt.Errorf("lazy restore: %w", err)
	}
	return r, nil
}

// dumped is a program started and dumped, to be restored.
type dumped struct {
	dir    string // where it ran and its restore's output goes
	out    string // its output file
	pid    int
	images string // its images, in dir
	dump   timed
}

// startDumped starts w's program in dir, waits until it is ready,
// dumps it with t into dir/images and reads the pages images once, so
// that the restore finds them in the page cache whatever the dump did.
func startDumped(e env, t tool, w workload, dir string) (d dumped, err error) {
	d = dumped{dir: dir, out: filepath.Join(dir, w.name+".out"), images: filepath.Join(dir, "images")}
	if err := os.MkdirAll(d.images, 0o755); err != nil {
		return d, err
	}
	if d.pid, err = startReady(filepath.Join(e.binDir, w.prog), w.args, dir, d.out, 0); err != nil {
		return d, err
	}
	if d.dump, err = dumpRound(t, w, dir, d.images, d.pid); err != nil {
		killGroup(d.pid, cleanTimeout)
		return d, err
	}
	return d, readPages(d.images)
}

// readPages reads every pages image of dir.
func readPages(dir string) error {
	pages, err := pagesImages(dir)
	if err != nil {
		return err
	}
	for _, p := range pages {
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, f)
		f.Close()
		if err != nil {
			return fmt.Errorf("read %s: %w", p, err)
		}
	}
	return nil
}

// lazyRestore starts t's lazy-pages daemon on images, waits for its
// socket, runs restore --lazy-pages -d, and waits for the daemon to
// end, all pages in. It fills r's lazy figures.
func lazyRestore(t tool, dir, images string, pid int, r *lazyRound) error {
	daemon, ended, err := startLazyPages(t, dir, images)
	if err != nil {
		return err
	}
	stopped := false
	defer func() {
		if !stopped {
			daemon.Process.Kill()
			<-ended
		}
	}()
	start := time.Now()
	rt, err := restoreDetached(t, dir, "lazy-restore", images, pid, "--lazy-pages")
	if err != nil {
		return err
	}
	r.lazyRestore = rt.wall
	select {
	case end := <-ended:
		stopped = true
		if end.err != nil {
			return fmt.Errorf("%s lazy-pages: %w: %s", t.name, end.err, tail(filepath.Join(images, lazyLog)))
		}
		r.waited = end.at.Sub(start)
	case <-time.After(commandTimeout):
		return fmt.Errorf("%s lazy-pages: not done after %v", t.name, commandTimeout)
	}
	if !t.logsAllIn {
		return nil
	}
	log, err := os.ReadFile(filepath.Join(images, lazyLog))
	if err != nil {
		return fmt.Errorf("amber lazy-pages: %w", err)
	}
	r.daemonAllIn, err = parseAllIn(string(log))
	return err
}

// lazyLog is the lazy-pages daemon's log, in the images directory.
const lazyLog = "lazy-pages.log"

// daemonEnd is when and how a daemon ended.
type daemonEnd struct {
	at  time.Time
	err error
}

// startLazyPages starts t's lazy-pages daemon on images, logging its
// progress (-v3: no line per fault) to lazyLog, and waits until its
// socket is there. The channel says when it ended.
func startLazyPages(t tool, dir, images string) (*exec.Cmd, <-chan daemonEnd, error) {
	errPath := filepath.Join(dir, "lazy-pages.stderr")
	errF, err := os.Create(errPath)
	if err != nil {
		return nil, nil, err
	}
	defer errF.Close()
	cmd := exec.Command(t.bin, append(t.command("lazy-pages", "-D", images), "-o", lazyLog, "-v3")...)
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, errF, errF
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("%s lazy-pages: %w", t.name, err)
	}
	ended := make(chan daemonEnd, 1)
	go func() {
		err := cmd.Wait()
		ended <- daemonEnd{at: time.Now(), err: err}
	}()
	socket := filepath.Join(images, lazySocket)
	for deadline := time.Now().Add(readyTimeout); ; time.Sleep(pollInterval) {
		if fi, err := os.Stat(socket); err == nil && fi.Mode().Type() == os.ModeSocket {
			return cmd, ended, nil
		}
		select {
		case end := <-ended:
			return nil, nil, fmt.Errorf("%s lazy-pages ended before it listened: %v: %s", t.name, end.err, tail(errPath))
		default:
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			<-ended
			return nil, nil, fmt.Errorf("%s lazy-pages: no %s after %v", t.name, socket, readyTimeout)
		}
	}
}

// allInLog is the line amber lazy-pages logs at its end.
var allInLog = regexp.MustCompile(`(?m)lazy-pages: .*, all in after (\S+)$`)

// parseAllIn reads the all-in time from amber lazy-pages' log.
func parseAllIn(log string) (time.Duration, error) {
	m := allInLog.FindStringSubmatch(log)
	if m == nil {
		return 0, errors.New("amber lazy-pages logged no \"all in after\"")
	}
	d, err := time.ParseDuration(m[1])
	if err != nil {
		return 0, fmt.Errorf("amber lazy-pages: all in after %q: %w", m[1], err)
	}
	return d, nil
}

// writeLazy prints the table of a lazy workload: for each tool, the
// best and median of each figure.
func writeLazy(w io.Writer, wl sizedWorkload, tools []tool, byTool map[string][]lazyRound) error {
	t := table{
		header: []string{"workload", "tool", "of N", "dump", "restore", "lazy restore", "all in (daemon)", "waited", "waited/restore"},
		left:   3,
	}
	name := fmt.Sprintf("%s (%d MiB)", wl.name, wl.mib)
	for _, tl := range tools {
		best, med := bestAndMedian(byTool[tl.name], func(r lazyRound) []time.Duration {
			return []time.Duration{r.dump, r.restore, r.lazyRestore, r.daemonAllIn, r.waited}
		})
		toolName := tl.name
		for i, v := range [][]time.Duration{best, med} {
			t.rows = append(t.rows, tableRow{cells: []string{name, toolName, ofN(i, len(byTool[tl.name])),
				fmtDuration(v[0]), fmtDuration(v[1]), fmtDuration(v[2]), fmtFloor(v[3]), fmtDuration(v[4]),
				fmtRatio(ratio(v[4], v[1]))}})
			name, toolName = "", ""
		}
	}
	if err := t.write(w); err != nil {
		return err
	}
	_, err := fmt.Fprint(w, "\ndump, restore: a plain dump and restore -d of the program; lazy restore: restore --lazy-pages -d\n"+
		"of another start of it, until the tree runs; all in (daemon): what amber lazy-pages logs, from\n"+
		"taking the first process to the last page in; waited: from the start of the lazy restore to the\n"+
		"end of the lazy-pages daemon, every page in; waited/restore: against the plain restore.\n")
	if err != nil || len(tools) < 2 {
		return err
	}
	return writeVersus(w, "waited", byTool[tools[0].name], byTool[tools[1].name], tools[1].name,
		func(r lazyRound) time.Duration { return r.waited })
}

// writeVersus prints amber's figure against another tool's, best over
// best and median over median.
func writeVersus[R any](w io.Writer, what string, amber, other []R, name string, get func(R) time.Duration) error {
	var a, o []time.Duration
	for _, r := range amber {
		a = append(a, get(r))
	}
	for _, r := range other {
		o = append(o, get(r))
	}
	_, err := fmt.Fprintf(w, "amber/%s %s: best %s, median %s\n", name, what,
		fmtRatio(ratio(minOf(a), minOf(o))), fmtRatio(ratio(median(a), median(o))))
	return err
}
