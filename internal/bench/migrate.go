package bench

// Migration workloads: a process that keeps writing random pages of its
// memory, moved by amber migrate to amber receive over loopback, once as
// a plain dump and restore (everything sent while frozen, --max-iters 0),
// once by pre-copy and once lazily (--lazy --max-iters 0). The pre-copy
// and lazy workloads run as the init of a pid namespace of its own,
// which a lazy migration on one host needs, and with which pre-copy
// hands over held (the destination restores while the source is frozen,
// and fills the memory from its images after the resume); the plain
// one does not, and is killed before its restore. Each round reports
// the downtime migrate prints (the last moment the source ran to the
// first the destination runs, on one clock), the time from then until
// every page is in (lazy and pre-copy: the plain one has them all when
// it runs) and migrate's total time.

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// migration is one migration workload: the dirty program writing rate
// MiB/s, moved in the modes named (all of them when empty).
type migration struct {
	name  string
	rate  int
	modes []string
}

// migrations are the migration workloads, in report order. They run only
// when named: each round moves the whole memory twice.
func migrations() []migration {
	return []migration{{name: "migrate8", rate: 8}, {name: "migrate64", rate: 64}}
}

// migrationMode is one way of migrating: its name and migrate's
// options, and the namespaces the workload starts in.
type migrationMode struct {
	name       string
	args       []string
	cloneflags uintptr
}

func migrationModes() []migrationMode {
	return []migrationMode{{"dump+restore", []string{"--max-iters", "0"}, 0}, {"pre-copy", nil, unix.CLONE_NEWPID},
		{"lazy", []string{"--lazy", "--max-iters", "0"}, unix.CLONE_NEWPID}}
}

// DefaultMigrateMiB is the migration workloads' memory without
// Options.MigrateMiB.
const DefaultMigrateMiB = 256

// migRound is one measured migration.
type migRound struct {
	downtime, total time.Duration
	// allIn is from the resumption to the last page in (lazy), zero
	// when every page came before.
	allIn       time.Duration
	preDumps    int
	frozenPages int
	pid         int // the workload on the destination
}

// splitMigrations separates the migration workloads of names from the
// others. A name may pick one mode after a slash (migrate64/lazy);
// several names of one workload run it once, in each mode they pick.
func splitMigrations(names []string) (rest []string, ms []migration) {
	byName := map[string]migration{}
	for _, m := range migrations() {
		byName[m.name] = m
	}
	at := map[string]int{}
	for _, n := range names {
		name, mode, picked := strings.Cut(n, "/")
		m, ok := byName[name]
		if !ok || (picked && !slices.ContainsFunc(migrationModes(), func(x migrationMode) bool { return x.name == mode })) {
			rest = append(rest, n)
			continue
		}
		i, seen := at[name]
		if !seen {
			at[name], i = len(ms), len(ms)
			ms = append(ms, m)
		}
		if !picked {
			ms[i].modes = []string{}
			for _, x := range migrationModes() {
				ms[i].modes = append(ms[i].modes, x.name)
			}
		} else if !slices.Contains(ms[i].modes, mode) {
			ms[i].modes = append(ms[i].modes, mode)
		}
	}
	return rest, ms
}

// runMigrations runs rounds of each migration in each mode and prints a
// table of the best and median downtime and total time.
func runMigrations(e env, ms []migration, mib, rounds int, out io.Writer) error {
	var rows [][]string
	for _, m := range ms {
		for _, mode := range migrationModes() {
			if !slices.Contains(m.modes, mode.name) {
				continue
			}
			var rs []migRound
			for i := 1; i <= rounds; i++ {
				dir := filepath.Join(e.workDir, fmt.Sprintf("%s-%s-%d", m.name, strings.ReplaceAll(mode.name, "+", "-"), i))
				r, err := migrateRound(e, m, mode, mib, dir)
				if err != nil {
					return fmt.Errorf("bench: %s %s round %d (in %s): %w", m.name, mode.name, i, dir, err)
				}
				fmt.Fprintf(out, "%s %s round %d/%d: downtime %s, all in %s after, total %s, %d pre-dumps, %d pages frozen\n",
					m.name, mode.name, i, rounds, fmtDuration(r.downtime), fmtDuration(r.allIn), fmtDuration(r.total), r.preDumps, r.frozenPages)
				rs = append(rs, r)
				if err := os.RemoveAll(dir); err != nil {
					return fmt.Errorf("bench: %w", err)
				}
			}
			rows = append(rows, migRow(m, mode, mib, rs))
		}
	}
	return writeMigrations(out, rows)
}

// migRow is the table row of one workload and mode.
func migRow(m migration, mode migrationMode, mib int, rs []migRound) []string {
	var down, allIn, total []time.Duration
	var frozen []int64
	for _, r := range rs {
		down, total, frozen = append(down, r.downtime), append(total, r.total), append(frozen, int64(r.frozenPages))
		allIn = append(allIn, r.allIn)
	}
	in := [2]string{"-", "-"}
	if slices.Max(allIn) > 0 {
		in = [2]string{fmtDuration(minOf(allIn)), fmtDuration(median(allIn))}
	}
	return []string{fmt.Sprintf("%s (%d MiB, %d MiB/s)", m.name, mib, m.rate), mode.name,
		fmtDuration(minOf(down)), fmtDuration(median(down)), in[0], in[1], fmtDuration(minOf(total)), fmtDuration(median(total)),
		strconv.FormatInt(median(frozen), 10)}
}

func minOf[T number](xs []T) T {
	m := xs[0]
	for _, x := range xs[1:] {
		m = min(m, x)
	}
	return m
}

// writeMigrations prints the migrations table.
func writeMigrations(w io.Writer, rows [][]string) error {
	fmt.Fprintf(w, "\n%-28s %-13s %12s %12s %12s %12s %12s %12s %8s\n", "migration", "mode", "down best", "down median",
		"all-in best", "all-in median", "total best", "total median", "frozen")
	for _, r := range rows {
		fmt.Fprintf(w, "%-28s %-13s %12s %12s %12s %12s %12s %12s %8s\n", r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8])
	}
	_, err := fmt.Fprint(w, "\ndown: the downtime amber migrate prints (source frozen to destination running, one clock);\n"+
		"all-in: from then until the destination had every page (lazy; \"-\": all in at the resumption);\n"+
		"total: amber migrate's own time, connection to the end; frozen: pages sent while frozen (median).\n")
	return err
}

// migrateRound starts the workload and amber receive, migrates the one
// to the other and checks the workload after.
func migrateRound(e env, m migration, mode migrationMode, mib int, dir string) (r migRound, err error) {
	recvDir := filepath.Join(dir, "received")
	if err := os.MkdirAll(recvDir, 0o755); err != nil {
		return r, err
	}
	out := filepath.Join(dir, m.name+".out")
	pid, err := startReady(filepath.Join(e.binDir, "dirty"), []string{strconv.Itoa(mib), strconv.Itoa(m.rate)}, dir, out, mode.cloneflags)
	if err != nil {
		return r, err
	}
	defer func() {
		if err != nil {
			killGroup(pid, cleanTimeout)
		}
	}()
	recv, addr, err := startReceive(e, dir, recvDir)
	if err != nil {
		return r, err
	}
	defer recv.Process.Kill()
	stop := reapWhile(pid)
	args := append([]string{"migrate", "-t", strconv.Itoa(pid), "--to", addr}, mode.args...)
	t, err := runTimed(dir, "migrate", e.amber, append(args, e.amberArgs...)...)
	stop()
	if err != nil {
		return r, err
	}
	if err := recv.Wait(); err != nil {
		return r, fmt.Errorf("amber receive: %w", err)
	}
	if r, err = parseMigrate(t.stdout); err != nil {
		return r, err
	}
	return r, verify(r.pid, out)
}

// startReceive starts amber receive into recvDir on a free loopback port
// and waits until it listens.
func startReceive(e env, dir, recvDir string) (*exec.Cmd, string, error) {
	port, err := freeLoopbackPort()
	if err != nil {
		return nil, "", err
	}
	args := append(append([]string{"receive", "-D", recvDir}, loopbackArgs(port)...), e.amberArgs...)
	cmd, err := startServer(dir, "receive", e.amber, args...)
	if err != nil {
		return nil, "", fmt.Errorf("amber %w", err)
	}
	return cmd, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), nil
}

// reapWhile reaps pid's end (the source killed for the handover: its
// PIDs are free for the destination only once it is reaped) until stop.
func reapWhile(pid int) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for {
			if _, ok, err := tryWait(pid); ok || err != nil {
				return
			}
			select {
			case <-done:
				return
			case <-time.After(200 * time.Microsecond):
			}
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}

var (
	downtimeLine = regexp.MustCompile(`(?m)^downtime: ([0-9.]+) ms`)
	totalLine    = regexp.MustCompile(`(?m)^total: ([0-9.]+) ms`)
	frozenLine   = regexp.MustCompile(`(?m)^frozen: (\d+) pages`)
	preDumpLine  = regexp.MustCompile(`(?m)^pre-dump \d+: `)
	allInLine    = regexp.MustCompile(`(?m)^all pages in: ([0-9.]+) ms`)
	pidLine      = regexp.MustCompile(`(?m)^migrated: pid (\d+) `)
)

// parseMigrate reads amber migrate's report.
func parseMigrate(stdout string) (migRound, error) {
	var r migRound
	d, t, f := downtimeLine.FindStringSubmatch(stdout), totalLine.FindStringSubmatch(stdout), frozenLine.FindStringSubmatch(stdout)
	p := pidLine.FindStringSubmatch(stdout)
	if d == nil || t == nil || f == nil || p == nil {
		return r, fmt.Errorf("amber migrate printed no downtime, total, frozen pages or pid: %q", stdout)
	}
	r.downtime, r.total = parseMs(d[1]), parseMs(t[1])
	r.frozenPages, _ = strconv.Atoi(f[1])
	r.pid, _ = strconv.Atoi(p[1])
	if a := allInLine.FindStringSubmatch(stdout); a != nil {
		r.allIn = parseMs(a[1])
	}
	r.preDumps = len(preDumpLine.FindAllString(stdout, -1))
	return r, nil
}

func parseMs(s string) time.Duration {
	f, _ := strconv.ParseFloat(s, 64)
	return time.Duration(f * float64(time.Millisecond))
}
