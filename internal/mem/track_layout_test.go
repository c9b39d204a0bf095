package mem

import (
	"bufio"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/vma"
	"golang.org/x/sys/unix"

	"amber/internal/proc"
)

// The property test of write tracking: a layout child (scan_layout_test.go)
// makes a userfaultfd for tracking; the test registers the child's VMAs
// with it, arms it with a first tracking scan, lets the child write, zap
// and read pages of its private mappings at random, and checks the
// written pages and markers the next scan finds against what the child
// did, page by page, and its data against a scan that does not track.

// trackRound makes the tracking userfaultfd, says "uffd FD", waits for
// "go", then writes, zaps or reads each page written before that stayed
// writable (at random), says which ("w ADDR", "z ADDR", "r ADDR") and
// ends with "done".
func (b *layoutBuilder) trackRound() error {
	fd, _, e := unix.Syscall(unix.SYS_USERFAULTFD, unix.O_CLOEXEC|unix.O_NONBLOCK, 0, 0)
	if e != 0 {
		return fmt.Errorf("userfaultfd: %w", e)
	}
	if err := InitTracking(os.NewFile(fd, "tracking")); err != nil {
		return err
	}
	fmt.Printf("uffd %d\n", fd)
	if line, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil || line != "go\n" {
		return fmt.Errorf("want go, got %q, %v", line, err)
	}
	out := bufio.NewWriter(os.Stdout)
	seen := map[int]bool{}
	for _, at := range b.written {
		if seen[at] {
			continue
		}
		seen[at] = true
		addr := uintptr(unsafe.Pointer(&b.mem[at]))
		switch b.rnd.IntN(6) {
		case 0, 1:
			b.mem[at+b.rnd.IntN(pageSize)]++
			fmt.Fprintf(out, "w %d\n", addr)
		case 2:
			if err := unix.Madvise(b.mem[at:at+pageSize], unix.MADV_DONTNEED); err != nil {
				return err
			}
			fmt.Fprintf(out, "z %d\n", addr)
		case 3:
			b.sum += b.mem[at+b.rnd.IntN(pageSize)]
			fmt.Fprintf(out, "r %d\n", addr)
		}
	}
	fmt.Fprintf(out, "done %d\n", b.sum)
	return out.Flush()
}

// touched is what a child did in its tracking round, by page address.
type touched map[uint64]byte

// trackRound tells the child to go and reads what it did.
func (c *layoutChild) trackRound(t *testing.T) touched {
	t.Helper()
	if _, err := c.stdin.Write([]byte("go\n")); err != nil {
		t.Fatal(err)
	}
	out := touched{}
	for {
		line, err := c.out.ReadString('\n')
		if err != nil {
			t.Fatalf("tracking child: %v", err)
		}
		f := strings.Fields(line)
		if len(f) == 2 && f[0] == "done" {
			return out
		}
		a, err := strconv.ParseUint(f[1], 10, 64)
		if len(f) != 2 || len(f[0]) != 1 || err != nil {
			t.Fatalf("tracking child: %q", line)
		}
		out[a] = f[0][0]
	}
}

// takeUffd reads "uffd FD" from the child and copies that descriptor.
func (c *layoutChild) takeUffd(t *testing.T) *os.File {
	t.Helper()
	line, err := c.out.ReadString('\n')
	var fd int
	if _, serr := fmt.Sscanf(line, "uffd %d", &fd); err != nil || serr != nil {
		t.Fatalf("tracking child: %q, %v", line, err)
	}
	pidfd, err := unix.PidfdOpen(c.cmd.Process.Pid, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(pidfd)
	mine, err := unix.PidfdGetfd(pidfd, fd, 0)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(mine), "tracking")
	t.Cleanup(func() { f.Close() })
	return f
}

// trackCounts says how much of each kind a run checked.
type trackCounts struct {
	Tracked, Written, Zapped, Read, Markers, Rewritten int
}

// TestTrackLayouts checks write tracking on random layouts: every page
// the child writes after the tracking is armed is reported written (the
// property a dump needs: a write missed is a page restored stale); no
// page it left alone is (outside huge pages, which are tracked whole); a
// scan right after another reports nothing; and a page it zapped is
// never dumped as data (a marker is no page). Vectors of every size make
// scans partial.
func TestTrackLayouts(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: pagemap swap entries are root's")
	}
	marker, err := ProbeMarker()
	if err != nil {
		t.Skipf("no write tracking here: %v", err)
	}
	const filePages = 256
	file := layoutFile(t, filePages)
	var total trackCounts
	seeds := []uint64{3, 4, uint64(time.Now().UnixNano())}
	for i, seed := range seeds {
		spec := smallLayout(seed)
		spec.File, spec.FilePages, spec.Track = file, filePages, true
		vecLen := scanVecLens[(int(seed)+i)%len(scanVecLens)]
		t.Run(fmt.Sprintf("seed=%d/vector=%d", seed, vecLen), func(t *testing.T) {
			t.Logf("replay with %s=%d", layoutSeedEnv, seed)
			c := startLayout(t, spec)
			counts := checkTracking(t, c, vecLen, marker)
			t.Logf("%+v", counts)
			total.Tracked += counts.Tracked
			total.Written += counts.Written
			total.Zapped += counts.Zapped
			total.Markers += counts.Markers
			total.Rewritten += counts.Rewritten
		})
	}
	if total.Tracked == 0 || total.Written == 0 || total.Zapped == 0 || total.Markers == 0 || total.Rewritten == 0 {
		t.Errorf("the layouts lacked a kind of page: %+v", total)
	}
}

func checkTracking(t *testing.T, c *layoutChild, vecLen int, marker uint64) trackCounts {
	var n trackCounts
	pid := c.cmd.Process.Pid
	uffd := c.takeUffd(t)
	vmas, alone := layoutVMAs(t, c)
	tracked, err := Register(uffd, vmas)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range tracked {
		n.Tracked += int((r.End - r.Start) / pageSize)
	}
	s, err := newScanner(pid, vecLen)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	before, err := planPages(s, vmas, alone, nil)
	if err != nil {
		t.Fatal(err)
	}
	track := &Track{Tracked: tracked, Marker: marker}
	// Nothing is protected yet: every page with data is written. The
	// walk that says so finds the same data as one that does not track.
	first := trackedPlan(t, s, vmas, alone, track)
	requireSamePlan(t, "arming", first, before)
	if missed := subtractRuns(intersectRuns(before.merged, tracked), first.written); len(missed) > 0 {
		t.Fatalf("first scan: pages with data %s not reported written", firstDifference(missed, nil))
	}
	if again := trackedPlan(t, s, vmas, alone, track); len(again.written) > 0 {
		t.Fatalf("scan right after arming: %v written", again.written)
	}
	did := c.trackRound(t)
	p := trackedPlan(t, s, vmas, alone, track)
	huge := hugeRanges(t, pid)
	got := setOfAddrs(p.written)
	for a, what := range did {
		switch what {
		case 'w':
			n.Written++
			if !got[a] && inRuns(tracked, a) {
				t.Errorf("page %#x written after arming, not reported written", a)
			}
		case 'z':
			n.Zapped++
		case 'r':
			n.Read++
		}
	}
	for a := range got {
		if did[a] != 'w' && !inRuns(huge, a) {
			t.Errorf("page %#x reported written, but the child %s", a, didWhat(did[a]))
		}
		n.Rewritten++
	}
	untracked, err := planPages(s, vmas, alone, nil)
	if err != nil {
		t.Fatal(err)
	}
	requireSamePlan(t, "after the round", p, untracked)
	again := trackedPlan(t, s, vmas, alone, track)
	if len(again.written) > 0 {
		t.Fatalf("scan right after a scan: %d runs written", len(again.written))
	}
	if !slices.Equal(again.markers, p.markers) {
		t.Errorf("markers %v, then %v in the scan right after", p.markers, again.markers)
	}
	for a := range setOfAddrs(p.markers) {
		n.Markers++
		if did[a] != 'z' {
			t.Errorf("page %#x holds a marker, but the child %s", a, didWhat(did[a]))
		}
		if !inRuns(p.merged, a) {
			t.Errorf("marker %#x is not among the data runs, where the dump leaves it out", a)
		}
	}
	for a := range setOfAddrs(subtractRuns(p.merged, p.markers)) {
		if did[a] == 'z' && !inRuns(huge, a) {
			t.Errorf("page %#x was zapped but would be dumped as data", a)
		}
	}
	return n
}

// trackedPlan plans the pages of a layout with its tracking read and
// re-armed in the same walks.
func trackedPlan(t *testing.T, s *Scanner, vmas []*vma.VmaEntry, alone []Run, track *Track) pagePlan {
	t.Helper()
	p, err := planPages(s, vmas, alone, track)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// requireSamePlan fails unless a tracking plan found the data runs,
// guard pages and shared pages that a plain one found.
func requireSamePlan(t *testing.T, when string, tracking, plain pagePlan) {
	t.Helper()
	if !slices.Equal(tracking.runs, plain.runs) {
		t.Fatalf("%s: the tracking walk found data %s", when, firstDifference(tracking.runs, plain.runs))
	}
	if !slices.Equal(tracking.guards, plain.guards) || !slices.Equal(tracking.shared, plain.shared) {
		t.Fatalf("%s: the tracking walk found guards %v and shared %v, a plain one %v and %v",
			when, tracking.guards, tracking.shared, plain.guards, plain.shared)
	}
}

func didWhat(b byte) string {
	switch b {
	case 'z':
		return "zapped it"
	case 'r':
		return "only read it"
	}
	return "left it alone"
}

func setOfAddrs(runs []Run) map[uint64]bool {
	out := map[uint64]bool{}
	for _, r := range runs {
		for a := r.Start; a < r.End; a += pageSize {
			out[a] = true
		}
	}
	return out
}

func inRuns(runs []Run, a uint64) bool {
	return slices.ContainsFunc(runs, func(r Run) bool { return r.Start <= a && a < r.End })
}

// hugeRanges are the child's VMAs with MADV_HUGEPAGE: the kernel tracks
// a huge page whole, and zapping part of one may leave it mapped.
func hugeRanges(t *testing.T, pid int) []Run {
	vmas, err := proc.ReadSmaps(pid)
	if err != nil {
		t.Fatal(err)
	}
	var out []Run
	for _, v := range vmas {
		if v.HasFlag("hg") {
			out = append(out, Run{v.Start, v.End})
		}
	}
	return out
}
