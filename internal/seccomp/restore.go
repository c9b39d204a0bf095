package seccomp

import (
	"errors"
	"fmt"
	"os"

	criucore "github.com/checkpoint-restore/go-criu/v8/crit/images/criu-core"
	seccompimg "github.com/checkpoint-restore/go-criu/v8/crit/images/seccomp"
	"golang.org/x/sys/unix"

	"amber/internal/image"
	"amber/internal/plan"
)

// Filters are the filters of a tree's seccomp.img.
type Filters struct {
	path    string
	filters []*seccompimg.SeccompFilter
}

// Load reads seccomp.img at p. Without one, the tree has no filters.
func Load(p image.Path) (*Filters, error) {
	entries, err := image.ReadFile(p, image.Seccomp, func() *seccompimg.SeccompEntry { return new(seccompimg.SeccompEntry) })
	if errors.Is(err, os.ErrNotExist) {
		return &Filters{path: p.String()}, nil
	}
	if err != nil {
		return nil, err
	}
	if len(entries) > 1 {
		return nil, fmt.Errorf("%s: want 1 entry, found %d", p, len(entries))
	}
	var e *seccompimg.SeccompEntry
	if len(entries) == 1 {
		e = entries[0]
	}
	return FromEntry(p.String(), e), nil
}

// FromEntry returns the filters of e, the entry of the seccomp.img at
// path (nil: no filters).
func FromEntry(path string, e *seccompimg.SeccompEntry) *Filters {
	return &Filters{path: path, filters: e.GetSeccompFilters()}
}

// chain follows a chain of the image from its first filter, start.
func (f *Filters) chain(start uint32) ([]Filter, error) {
	var out []Filter
	seen := map[uint32]bool{}
	for i, next := start, true; next; i = f.filters[i].GetPrev() {
		if int(i) >= len(f.filters) {
			return nil, fmt.Errorf("%s: filter %d: no such filter (%d in the image)", f.path, i, len(f.filters))
		}
		if seen[i] {
			return nil, fmt.Errorf("%s: filter %d: the chain loops", f.path, i)
		}
		seen[i] = true
		sf := f.filters[i]
		if err := check(sf); err != nil {
			return nil, fmt.Errorf("%s: filter %d: %w", f.path, i, err)
		}
		out = append(out, Filter{Prog: sf.GetFilter(), Flags: sf.GetFlags()})
		next = sf.Prev != nil
	}
	return out, nil
}

// check refuses a filter the kernel could not take, or whose flags amber
// cannot give again.
func check(sf *seccompimg.SeccompFilter) error {
	n := len(sf.GetFilter())
	if n == 0 || n%insnSize != 0 || n/insnSize > maxInsns {
		return fmt.Errorf("%d bytes is not a program of 1 to %d instructions of %d bytes", n, maxInsns, insnSize)
	}
	if extra := sf.GetFlags() &^ restoreFlags; extra != 0 {
		return fmt.Errorf("flags %#x: amber cannot install a filter with flags %#x", sf.GetFlags(), extra)
	}
	return nil
}

// Process is what each thread of a process installs at restore.
type Process struct {
	threads []Thread // by thread, the leader first
}

// ForProcess reads the seccomp state of the threads of a process (the
// leader first; tids[i] is cores[i]'s thread) and decides what each
// installs: a start of chain all threads share is installed once by the
// leader, with TSYNC.
func (f *Filters) ForProcess(tids []int, cores []*criucore.ThreadCoreEntry) (Process, error) {
	p := Process{threads: make([]Thread, len(cores))}
	for i, c := range cores {
		th, err := f.thread(c)
		if err != nil {
			return Process{}, fmt.Errorf("thread %d: %w", tids[i], err)
		}
		p.threads[i] = th
	}
	p.shareStart()
	return p, nil
}

func (f *Filters) thread(c *criucore.ThreadCoreEntry) (Thread, error) {
	switch m := c.GetSeccompMode(); m {
	case criucore.SeccompMode_disabled:
		return Thread{}, nil
	case criucore.SeccompMode_strict:
		return Thread{Mode: ModeStrict}, nil
	case criucore.SeccompMode_filter:
		if c.SeccompFilter == nil {
			return Thread{}, fmt.Errorf("seccomp mode filter without seccomp_filter")
		}
		chain, err := f.chain(c.GetSeccompFilter())
		if err != nil {
			return Thread{}, err
		}
		return Thread{Mode: ModeFilter, Chain: chain}, nil
	default:
		return Thread{}, fmt.Errorf("unknown seccomp mode %d", m)
	}
}

// shareStart moves the start of chain every thread shares to the leader,
// flagged TSYNC: installed once, it becomes theirs too, shared.
func (p *Process) shareStart() {
	if len(p.threads) < 2 {
		return
	}
	n := len(p.threads[0].Chain)
	for _, th := range p.threads {
		if th.Mode != ModeFilter {
			return
		}
		n = min(n, commonStart(p.threads[0].Chain, th.Chain))
	}
	if n == 0 {
		return
	}
	leader := p.threads[0].Chain
	shared := make([]Filter, n, len(leader))
	for i, f := range leader[:n] {
		shared[i] = Filter{Prog: f.Prog, Flags: f.Flags | unix.SECCOMP_FILTER_FLAG_TSYNC}
	}
	p.threads[0].Chain = append(shared, leader[n:]...)
	for i := 1; i < len(p.threads); i++ {
		p.threads[i].Chain = p.threads[i].Chain[n:]
	}
}

func commonStart(a, b []Filter) int {
	n := 0
	for n < len(a) && n < len(b) && sameFilter(a[n], b[n]) {
		n++
	}
	return n
}

// Active tells whether a thread of the process is under seccomp: its
// filters must be suspended while amber restores it.
func (p Process) Active() bool {
	for _, th := range p.threads {
		if th.Mode != ModeDisabled {
			return true
		}
	}
	return false
}

// PlanFilters plans the filters thread i installs, oldest first.
func (p Process) PlanFilters(b *plan.Builder, i int) {
	if i >= len(p.threads) {
		return
	}
	chain := p.threads[i].Chain
	for j, f := range chain {
		prog := b.Bytes(f.Prog)
		fprog := b.Uint64s(uint64(len(f.Prog)/insnSize), prog) // struct sock_fprog
		b.Call(fmt.Sprintf("install seccomp filter %d of %d (%d instructions, flags %#x)", j+1, len(chain), len(f.Prog)/insnSize, f.Flags),
			unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, uint64(f.Flags), fprog)
	}
}

// PlanStrict plans strict mode for thread i if it had it: its last call.
func (p Process) PlanStrict(b *plan.Builder, i int) {
	if i < len(p.threads) && p.threads[i].Mode == ModeStrict {
		b.Call("enter seccomp strict mode", unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_STRICT, 0, 0)
	}
}
