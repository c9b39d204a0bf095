package dump

// The layout of a frozen process of a migration comes from two reads
// (any other dump reads smaps alone, first: readLayout). /proc/PID/maps,
// read first, is quick and tells the parasite all it needs (where code
// and the main stack lie). /proc/PID/smaps adds what the images need
// (VmFlags, the shared and swapped bytes) but costs a walk of every page
// table: milliseconds for a GiB of memory, which the frozen process
// would wait for on top of the parasite's round trips. So smaps is read
// meanwhile, while the parasite goes in, and may see the parasite's
// scratch mapping or not: on its own, or merged with a neighbour (the
// kernel merges only mappings of equal flags, so the neighbour's
// VmFlags are the merged mapping's). joinLayout cuts the scratch out and
// checks that what remains is the layout maps showed, mapping by
// mapping: the process is frozen, and nothing else may have changed it.

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"amber/internal/compel"
	"amber/internal/proc"
)

// joinLayout returns the smaps mappings without the parasite's scratch
// [start, end), and an error if they are not the mappings of maps.
func joinLayout(smaps, maps []proc.VMA, start, end uint64) ([]proc.VMA, error) {
	out := withoutArea(smaps, start, end)
	for i := range max(len(out), len(maps)) {
		switch {
		case i >= len(out):
			return nil, fmt.Errorf("the layout changed while frozen: smaps lacks %s of maps", vmaText(maps[i]))
		case i >= len(maps):
			return nil, fmt.Errorf("the layout changed while frozen: maps lacks %s of smaps", vmaText(out[i]))
		case !sameMapping(out[i], maps[i]):
			return nil, fmt.Errorf("the layout changed while frozen: smaps has %s where maps has %s", vmaText(out[i]), vmaText(maps[i]))
		}
	}
	return out, nil
}

// withoutArea cuts [start, end) out of the mappings vmas. A mapping that
// held it on one side or both keeps the rest, with the offset of a file
// mapping moved along.
func withoutArea(vmas []proc.VMA, start, end uint64) []proc.VMA {
	if start >= end {
		return vmas
	}
	out := make([]proc.VMA, 0, len(vmas)+1)
	for _, v := range vmas {
		if v.End <= start || v.Start >= end {
			out = append(out, v)
			continue
		}
		if v.Start < start {
			left := v
			left.End = start
			out = append(out, left)
		}
		if v.End > end {
			right := v
			if v.Inode != 0 {
				right.Offset += end - v.Start
			}
			right.Start = end
			out = append(out, right)
		}
	}
	return out
}

// sameMapping says whether a and b are one mapping as maps shows it.
func sameMapping(a, b proc.VMA) bool {
	return a.Start == b.Start && a.End == b.End && a.Prot == b.Prot && a.Shared == b.Shared && a.Offset == b.Offset &&
		a.Major == b.Major && a.Minor == b.Minor && a.Inode == b.Inode && a.Path == b.Path && a.Deleted == b.Deleted
}

// vmaText names a mapping in an error.
func vmaText(v proc.VMA) string {
	s := fmt.Sprintf("%x-%x", v.Start, v.End)
	if v.Path != "" {
		s += " " + v.Path
	}
	return s
}

// smapsRead is the outcome of a read of smaps, joined with maps.
type smapsRead struct {
	vmas []proc.VMA
	err  error
	took time.Duration
}

// readSmaps reads the smaps of pid in the background and joins them
// with maps, read before the parasite mapped its scratch [from, to).
func readSmaps(pid int, maps []proc.VMA, from, to uint64) <-chan smapsRead {
	out := make(chan smapsRead, 1)
	go func() {
		at := time.Now()
		vmas, err := proc.ReadSmaps(pid)
		if err == nil {
			vmas, err = joinLayout(vmas, maps, from, to)
		}
		out <- smapsRead{vmas, err, time.Since(at)}
	}()
	return out
}

// readLayout reads the mappings of ps the parasite needs. A dump of a
// migration's chain (Options.Layouts) reads maps and leaves smaps for
// smapsBeside, out of the frozen window's critical path. Any other dump
// reads smaps at once: reading both costs a dump of 10,000 mappings a
// quarter more (the bench's vma10k and filemap4k), for a freeze nobody
// times.
func (t *frozenTree) readLayout(ps *procState) ([]proc.VMA, error) {
	start := time.Now()
	var err error
	if t.layouts == nil {
		if ps.vmas, err = proc.ReadSmaps(ps.pid); err != nil {
			return nil, err
		}
		t.log.Debugf("pid %d: smaps read in %v", ps.pid, time.Since(start))
		return ps.vmas, nil
	}
	maps, err := proc.ReadMaps(ps.pid)
	if err != nil {
		return nil, err
	}
	t.log.Debugf("pid %d: maps read in %v", ps.pid, time.Since(start))
	return maps, nil
}

// smapsBeside gives ps the smaps of the dump before where maps shows
// them unchanged, or starts reading them while the parasite answers.
func (t *frozenTree) smapsBeside(ps *procState, maps []proc.VMA) {
	reused := false
	if t.reuse {
		ps.vmas, reused = t.layouts.reuse(ps.pid, maps, ps.par)
	}
	if reused {
		t.log.Debugf("pid %d: the smaps of the dump before serve: maps shows no change", ps.pid)
		return
	}
	from, to := ps.par.Area()
	ps.smaps = readSmaps(ps.pid, maps, from, to)
}

// layout waits for the smaps of ps, which the VMA entries need.
func (t *frozenTree) layout(ps *procState) error {
	if ps.smaps == nil {
		return nil
	}
	r := <-ps.smaps
	ps.smaps = nil
	if r.err != nil {
		return fmt.Errorf("pid %d: %w", ps.pid, r.err)
	}
	ps.vmas = r.vmas
	t.log.Debugf("pid %d: smaps read in %v", ps.pid, r.took)
	t.layouts.learn(ps.pid, r.vmas)
	return nil
}

// Layouts carries the mappings each dump of a chain read from smaps to
// the next dump of the chain in the same amber (amber migrate's
// pre-dumps and final dump), so that the final dump, whose tree waits
// frozen, need not walk every page table again: where maps shows each
// mapping of a process exactly as the dump before read it (start, end,
// protection, sharing, offset, device, inode, path), that dump's smaps
// serve (reuse). What maps does not show, a madvise or mlock of a whole
// mapping since, would go unseen: Check reads smaps once the images
// are written and before the tree is handed over, while the destination
// restores, and refuses the handover if a mapping's VmFlags changed.
// The shared and swapped counts may be stale: they only choose how a
// dumped page is read (mem.MappedAlone), not what is saved.
type Layouts struct {
	learnt map[int][]proc.VMA
	reused map[int]reusedLayout
}

// reusedLayout is a process's layout a final dump reused, where the
// parasite's scratch lay, and the smaps read to check it.
type reusedLayout struct {
	vmas     []proc.VMA
	from, to uint64
	smaps    <-chan smapsRead
}

// NewLayouts returns an empty carrier for one chain.
func NewLayouts() *Layouts {
	return &Layouts{learnt: map[int][]proc.VMA{}, reused: map[int]reusedLayout{}}
}

// learn records the smaps a dump read of pid (a nil l records nothing).
func (l *Layouts) learn(pid int, vmas []proc.VMA) {
	if l != nil {
		l.learnt[pid] = vmas
		delete(l.reused, pid)
	}
}

// LearnRunning reads the smaps of the processes pids while their tree
// still runs, for a final dump that no pre-dump went before (amber
// migrate --max-iters 0, --lazy), whose frozen process would otherwise
// wait for the walk of its page tables: the dump reuses them where maps
// shows no change once frozen, and Check reads them again, as after a
// pre-dump. A process whose smaps cannot be read is left to the dump.
func (l *Layouts) LearnRunning(pids []int) {
	for _, pid := range pids {
		if vmas, err := proc.ReadSmaps(pid); err == nil {
			l.learn(pid, vmas)
		}
	}
}

// reuse returns the mappings of pid the dump before read, if maps
// shows them unchanged, and records that the dump reused them.
func (l *Layouts) reuse(pid int, maps []proc.VMA, par *compel.Parasite) ([]proc.VMA, bool) {
	if l == nil {
		return nil, false
	}
	vmas, ok := reuseLayout(l.learnt[pid], maps)
	if ok {
		from, to := par.Area()
		l.reused[pid] = reusedLayout{vmas: vmas, from: from, to: to}
	}
	return vmas, ok
}

// reuseLayout returns learnt if maps shows the very same mappings.
func reuseLayout(learnt, maps []proc.VMA) ([]proc.VMA, bool) {
	if learnt == nil || len(learnt) != len(maps) {
		return nil, false
	}
	for i := range maps {
		if !sameMapping(learnt[i], maps[i]) {
			return nil, false
		}
	}
	return learnt, true
}

// startCheck starts reading the smaps of pid, if the dump reused its
// layout, to check it: once its memory is dumped, when nothing of the
// dump changes the process's mappings any more, so that the read (a
// walk of every page table, under the process's mmap lock) neither
// waits for the dump nor holds it up.
func (l *Layouts) startCheck(pid int) {
	if l == nil {
		return
	}
	if r, ok := l.reused[pid]; ok && r.smaps == nil {
		r.smaps = readSmaps(pid, r.vmas, r.from, r.to)
		l.reused[pid] = r
	}
}

// Check waits for the smaps of each process whose layout the last dump
// reused, read while its tree is still frozen, and returns an error if
// a mapping's VmFlags differ from those the images hold (a nil l, or a
// dump that reused nothing, checks nothing).
func (l *Layouts) Check() error {
	if l == nil {
		return nil
	}
	for pid := range l.reused {
		l.startCheck(pid)
		r := <-l.reused[pid].smaps
		if r.err != nil {
			return fmt.Errorf("check the layout of pid %d: %w", pid, r.err)
		}
		if err := sameFlags(r.vmas, l.reused[pid].vmas); err != nil {
			return fmt.Errorf("pid %d: %w", pid, err)
		}
	}
	return nil
}

// sameFlags compares the VmFlags of two lists of the same mappings,
// but for those of the memory tracking: userfaultfd's (a tracking dump
// registers new mappings) and soft-dirty's (a tracking dump clears it).
func sameFlags(now, dumped []proc.VMA) error {
	for i := range now {
		a, b := withoutTracking(now[i].VmFlags), withoutTracking(dumped[i].VmFlags)
		if !slices.Equal(a, b) {
			return fmt.Errorf("mapping %s has VmFlags %q, the images %q: changed (madvise, mlock) since the dump before, "+
				"whose smaps the frozen dump reused", vmaText(now[i]), strings.Join(a, " "), strings.Join(b, " "))
		}
	}
	return nil
}

// trackingFlags are the VmFlags of userfaultfd registrations and the
// soft-dirty flag of a mapping made since the bits were last cleared.
var trackingFlags = []string{"um", "uw", "ui", "sd"}

func withoutTracking(flags []string) []string {
	return slices.DeleteFunc(slices.Clone(flags), func(f string) bool { return slices.Contains(trackingFlags, f) })
}
