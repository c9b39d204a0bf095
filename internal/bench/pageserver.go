package bench

// The page server workload (pageserverN): the mem program with N MiB,
// dumped with --leave-running twice a round, once to local disk and
// once to a page server on loopback writing to the same disk, in turns
// first; then killed and restored from the dump to the page server (its
// images joined with the server's), and checked. With a CRIU binary,
// CRIU does the same next to amber.

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// psRound is one round of a page server workload with one tool.
type psRound struct {
	local, server time.Duration // the dump to local disk, to the page server
	restore       time.Duration // the restore of the dump to the page server
}

// runPageServer runs rounds of w with each tool, the tools in turns first
// from round to round, and prints the table.
func runPageServer(e env, w sizedWorkload, rounds int, out io.Writer) error {
	byTool := map[string][]psRound{}
	for i := 1; i <= rounds; i++ {
		for _, t := range e.toolsOfRound(i) {
			dir := filepath.Join(e.workDir, fmt.Sprintf("%s-%s-%d", w.name, t.name, i))
			serverFirst := i%2 == 0
			r, err := pageServerRound(e, t, w, dir, serverFirst)
			if err != nil {
				return fmt.Errorf("bench: %s %s round %d (in %s): %w", w.name, t.name, i, dir, err)
			}
			first := "disk"
			if serverFirst {
				first = "page server"
			}
			fmt.Fprintf(out, "%s %s round %d/%d: dump to disk %s, to the page server %s (%s first), restore %s\n",
				w.name, t.name, i, rounds, fmtDuration(r.local), fmtDuration(r.server), first, fmtDuration(r.restore))
			byTool[t.name] = append(byTool[t.name], r)
			if err := os.RemoveAll(dir); err != nil {
				return fmt.Errorf("bench: %w", err)
			}
		}
	}
	fmt.Fprintln(out)
	return writePageServer(out, w, e.tools(), byTool)
}

// pageServerRound runs one round of w with t in dir.
func pageServerRound(e env, t tool, w sizedWorkload, dir string, serverFirst bool) (r psRound, err error) {
	mem := memWorkload(w.name, w.mib)
	local, sent, received := filepath.Join(dir, "local"), filepath.Join(dir, "sent"), filepath.Join(dir, "received")
	for _, d := range []string{local, sent, received} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return r, err
		}
	}
	out := filepath.Join(dir, w.name+".out")
	pid, err := startReady(filepath.Join(e.binDir, mem.prog), mem.args, dir, out, 0)
	if err != nil {
		return r, err
	}
	defer func() {
		if err != nil {
			killGroup(pid, cleanTimeout)
		}
	}()
	toDisk := func() (err error) { r.local, err = dumpLeaving(t, dir, "dump-local", local, pid); return err }
	toServer := func() (err error) { r.server, err = dumpToServer(t, dir, sent, received, pid); return err }
	dumps := []func() error{toDisk, toServer}
	if serverFirst {
		dumps[0], dumps[1] = toServer, toDisk
	}
	for _, dump := range dumps {
		if err := dump(); err != nil {
			return r, err
		}
		// The next dump must not compete with this one's writeback.
		unix.Sync()
	}
	if err := killGroup(pid, cleanTimeout); err != nil {
		return r, err
	}
	if err := moveImages(received, sent); err != nil {
		return r, err
	}
	rt, err := restoreDetached(t, dir, "restore", sent, pid)
	if err != nil {
		return r, fmt.Errorf("restore of the dump to the page server: %w", err)
	}
	r.restore = rt.wall
	return r, verify(pid, out)
}

// dumpLeaving dumps pid with t into images with --leave-running and
// extra. It returns the dump's wall time.
func dumpLeaving(t tool, dir, name, images string, pid int, extra ...string) (time.Duration, error) {
	args := append([]string{"-t", strconv.Itoa(pid), "-D", images, "--leave-running"}, extra...)
	d, err := runTimed(dir, name, t.bin, t.command("dump", args...)...)
	if err != nil {
		return 0, err
	}
	return d.wall, nil
}

// dumpToServer starts t's page server on a free loopback port writing
// into received, dumps pid into images with --page-server to it, and
// waits for the server to end, its images written. It returns the
// dump's wall time.
func dumpToServer(t tool, dir, images, received string, pid int) (time.Duration, error) {
	port, err := freeLoopbackPort()
	if err != nil {
		return 0, err
	}
	args := t.command("page-server", append([]string{"-D", received}, loopbackArgs(port)...)...)
	srv, err := startServer(dir, "page-server", t.bin, args...)
	if err != nil {
		return 0, fmt.Errorf("%s %w", t.name, err)
	}
	ended := make(chan error, 1)
	go func() { ended <- srv.Wait() }()
	d, err := dumpLeaving(t, dir, "dump-page-server", images, pid, append([]string{"--page-server"}, loopbackArgs(port)...)...)
	if err != nil {
		srv.Process.Kill()
		<-ended
		return 0, err
	}
	select {
	case err := <-ended:
		if err != nil {
			return 0, fmt.Errorf("%s page-server: %w: %s", t.name, err, tail(filepath.Join(dir, "page-server.log")))
		}
	case <-time.After(commandTimeout):
		srv.Process.Kill()
		<-ended
		return 0, fmt.Errorf("%s page-server: still running %v after the dump", t.name, commandTimeout)
	}
	return d, nil
}

// moveImages moves every image of src into dst: a restore needs the
// page server's images beside the dump's.
func moveImages(src, dst string) error {
	names, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, n := range names {
		if strings.HasSuffix(n.Name(), ".img") {
			if err := os.Rename(filepath.Join(src, n.Name()), filepath.Join(dst, n.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}

// writePageServer prints the table of a page server workload: for each
// tool, the best and median of each figure.
func writePageServer(w io.Writer, wl sizedWorkload, tools []tool, byTool map[string][]psRound) error {
	t := table{
		header: []string{"workload", "tool", "of N", "dump to disk", "to page server", "server/disk", "restore"},
		left:   3,
	}
	name := fmt.Sprintf("%s (%d MiB)", wl.name, wl.mib)
	for _, tl := range tools {
		best, med := bestAndMedian(byTool[tl.name], func(r psRound) []time.Duration { return []time.Duration{r.local, r.server, r.restore} })
		toolName := tl.name
		for i, v := range [][]time.Duration{best, med} {
			t.rows = append(t.rows, tableRow{cells: []string{name, toolName, ofN(i, len(byTool[tl.name])),
				fmtDuration(v[0]), fmtDuration(v[1]), fmtRatio(ratio(v[1], v[0])), fmtDuration(v[2])}})
			name, toolName = "", ""
		}
	}
	if err := t.write(w); err != nil {
		return err
	}
	_, err := fmt.Fprint(w, "\ndump to disk, to page server: dump --leave-running of one running program, to local disk\n"+
		"and to page-server on 127.0.0.1 writing to the same disk, in turns first, synced after each;\n"+
		"server/disk: best over best, median over median; restore: of the dump to the page server.\n")
	return err
}
