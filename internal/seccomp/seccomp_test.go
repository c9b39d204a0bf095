package seccomp

import (
	"encoding/binary"
	"strings"
	"testing"

	criucore "github.com/checkpoint-restore/go-criu/v8/crit/images/criu-core"
	seccompimg "github.com/checkpoint-restore/go-criu/v8/crit/images/seccomp"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/plan"
)

// prog is a program of n instructions whose bytes say tag.
func prog(tag byte, n int) []byte {
	b := make([]byte, n*insnSize)
	for i := range b {
		b[i] = tag
	}
	return b
}

var (
	fa = Filter{Prog: prog('a', 4)}
	fb = Filter{Prog: prog('b', 8), Flags: unix.SECCOMP_FILTER_FLAG_LOG}
	fc = Filter{Prog: prog('c', 2)}
)

func filtered(chain ...Filter) Thread { return Thread{Mode: ModeFilter, Chain: chain} }

func cores(n int) []*criucore.ThreadCoreEntry {
	out := make([]*criucore.ThreadCoreEntry, n)
	for i := range out {
		out[i] = &criucore.ThreadCoreEntry{}
	}
	return out
}

// roundTrip records processes as a dump does and reads them back as a
// restore does.
func roundTrip(t *testing.T, procs ...[]Thread) ([]Process, *seccompimg.SeccompEntry) {
	t.Helper()
	table := NewTable()
	var all [][]*criucore.ThreadCoreEntry
	for _, threads := range procs {
		c := cores(len(threads))
		table.AddProcess(threads, c)
		all = append(all, c)
	}
	entry := table.Entry()
	f := &Filters{path: "seccomp.img", filters: entry.GetSeccompFilters()}
	var out []Process
	for _, c := range all {
		tids := make([]int, len(c))
		p, err := f.ForProcess(tids, c)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out, entry
}

func chainsEqual(a, b []Filter) bool { return same(a, b) }

// TestLayoutIsCRIUs: the newest filter is written first, each older one
// names the one before it as prev, the thread the oldest: what CRIU
// writes and installs from.
func TestLayoutIsCRIUs(t *testing.T) {
	table := NewTable()
	c := cores(2)
	table.AddProcess([]Thread{filtered(fa, fb), {}}, c)
	got := table.Entry().GetSeccompFilters()
	if len(got) != 2 {
		t.Fatalf("%d filters, want 2", len(got))
	}
	if string(got[0].GetFilter()) != string(fb.Prog) || got[0].Prev != nil {
		t.Errorf("entry 0: want the newest filter without prev, got %v", got[0])
	}
	if string(got[1].GetFilter()) != string(fa.Prog) || got[1].GetPrev() != 0 {
		t.Errorf("entry 1: want the oldest filter with prev 0, got %v", got[1])
	}
	if c[0].GetSeccompMode() != criucore.SeccompMode_filter || c[0].GetSeccompFilter() != 1 {
		t.Errorf("leader: mode %v filter %d, want filter 1", c[0].GetSeccompMode(), c[0].GetSeccompFilter())
	}
	if c[1].SeccompMode != nil || c[1].SeccompFilter != nil {
		t.Errorf("thread without seccomp: %v", c[1])
	}
	if got[1].GetFlags() != 0 || got[0].GetFlags() != unix.SECCOMP_FILTER_FLAG_LOG {
		t.Errorf("flags %#x, %#x", got[1].GetFlags(), got[0].GetFlags())
	}
}

// TestSharedChainUsesTsync: threads with the leader's chain are recorded
// as CRIU does, the chain on the leader flagged TSYNC; the restore
// installs it in the leader only.
func TestSharedChainUsesTsync(t *testing.T) {
	procs, _ := roundTrip(t, []Thread{filtered(fa, fb), filtered(fa, fb), filtered(fa, fb)})
	p := procs[0]
	for _, f := range p.threads[0].Chain {
		if f.Flags&unix.SECCOMP_FILTER_FLAG_TSYNC == 0 {
			t.Errorf("leader's filter without TSYNC: %#x", f.Flags)
		}
	}
	if len(p.threads[0].Chain) != 2 || p.threads[0].Chain[1].Flags&unix.SECCOMP_FILTER_FLAG_LOG == 0 {
		t.Errorf("leader's chain %v", p.threads[0].Chain)
	}
	for _, th := range p.threads[1:] {
		if th.Mode != ModeDisabled || len(th.Chain) != 0 {
			t.Errorf("other thread installs %v itself", th)
		}
	}
	if !p.Active() {
		t.Error("process with filters not active")
	}
}

// TestCommonStartShared: threads whose chains share a start get it from
// the leader, with TSYNC, and install the rest themselves.
func TestCommonStartShared(t *testing.T) {
	procs, _ := roundTrip(t, []Thread{filtered(fa, fb), filtered(fa, fb, fc), filtered(fa)})
	p := procs[0]
	want := [][]Filter{{fa, fb}, {fb, fc}, {}}
	want[0] = []Filter{{Prog: fa.Prog, Flags: unix.SECCOMP_FILTER_FLAG_TSYNC}, fb}
	want[1] = []Filter{fb, fc}
	for i, th := range p.threads {
		if th.Mode != ModeFilter || !chainsEqual(th.Chain, want[i]) {
			t.Errorf("thread %d installs %v, want %v", i, th.Chain, want[i])
		}
	}
}

// TestDifferentChainsKept: no common start, each thread its own chain;
// a thread without seccomp keeps none; strict mode is kept.
func TestDifferentChainsKept(t *testing.T) {
	procs, entry := roundTrip(t, []Thread{{}, filtered(fa), filtered(fb), {Mode: ModeStrict}}, []Thread{filtered(fb)})
	p := procs[0]
	if p.threads[0].Mode != ModeDisabled || !chainsEqual(p.threads[1].Chain, []Filter{fa}) ||
		!chainsEqual(p.threads[2].Chain, []Filter{fb}) || p.threads[3].Mode != ModeStrict {
		t.Errorf("threads %v", p.threads)
	}
	// The second process's chain is the third thread's: written once. Its
	// leader's is flagged TSYNC (a process of one thread), so it is not.
	if n := len(entry.GetSeccompFilters()); n != 3 {
		t.Errorf("%d filters written, want 3", n)
	}
}

// TestSameChainWrittenOnce: processes with the same chain share entries.
func TestSameChainWrittenOnce(t *testing.T) {
	table := NewTable()
	c1, c2 := cores(2), cores(1)
	table.AddProcess([]Thread{{}, filtered(fa, fb)}, c1)
	table.AddProcess([]Thread{{}, filtered(fa, fb)}[1:], c2)
	table.AddProcess([]Thread{filtered(fa, fb), filtered(fc)}, cores(2))
	// (a, b) once for the first and third processes, (a, b) flagged TSYNC
	// for the second (one thread: CRIU's convention), c.
	if n := len(table.Entry().GetSeccompFilters()); n != 2+2+1 {
		t.Errorf("%d filters written, want 5", n)
	}
}

// TestPlanFilters: each filter is a seccomp call on a struct sock_fprog
// pointing to the program, oldest first; strict mode a call of its own.
func TestPlanFilters(t *testing.T) {
	p := Process{threads: []Thread{filtered(fa, fb), {Mode: ModeStrict}}}
	b := plan.NewBuilder(0x100000, plan.PageSize)
	b.StartSection("t")
	p.PlanFilters(b, 0)
	p.PlanStrict(b, 0)
	p.PlanFilters(b, 1)
	p.PlanStrict(b, 1)
	p.PlanFilters(b, 7) // no such thread: nothing
	prog := b.Finish()
	if len(prog.Calls) != 3 {
		t.Fatalf("%d calls, want 3:\n%s", len(prog.Calls), prog)
	}
	for i, f := range []Filter{fa, fb} {
		c := prog.Calls[i]
		if c.Nr != unix.SYS_SECCOMP || c.Args[0] != unix.SECCOMP_SET_MODE_FILTER || c.Args[1] != uint64(f.Flags) {
			t.Fatalf("call %d: %v", i, c)
		}
		fprog := read(prog, c.Args[2], 16)
		n, addr := binary.LittleEndian.Uint16(fprog), binary.LittleEndian.Uint64(fprog[8:])
		if int(n) != len(f.Prog)/insnSize || string(read(prog, addr, len(f.Prog))) != string(f.Prog) {
			t.Errorf("call %d: sock_fprog %d instructions at %#x", i, n, addr)
		}
	}
	if c := prog.Calls[2]; c.Nr != unix.SYS_SECCOMP || c.Args[0] != unix.SECCOMP_SET_MODE_STRICT {
		t.Errorf("strict: %v", c)
	}
}

// read returns n bytes of the scratch area at addr.
func read(p *plan.Program, addr uint64, n int) []byte {
	off := addr - p.Base
	return p.Image[off : off+uint64(n)]
}

// TestBadImages: corrupt chains are refused with the filter named.
func TestBadImages(t *testing.T) {
	good := func() []*seccompimg.SeccompFilter {
		return []*seccompimg.SeccompFilter{
			{Filter: prog('b', 2)},
			{Filter: prog('a', 2), Prev: proto.Uint32(0)},
		}
	}
	tests := []struct {
		name  string
		edit  func(f []*seccompimg.SeccompFilter, c *criucore.ThreadCoreEntry)
		error string
	}{
		{"index out of range", func(f []*seccompimg.SeccompFilter, c *criucore.ThreadCoreEntry) { c.SeccompFilter = proto.Uint32(9) }, "filter 9: no such filter"},
		{"prev out of range", func(f []*seccompimg.SeccompFilter, c *criucore.ThreadCoreEntry) { f[1].Prev = proto.Uint32(5) }, "filter 5: no such filter"},
		{"loop", func(f []*seccompimg.SeccompFilter, c *criucore.ThreadCoreEntry) { f[0].Prev = proto.Uint32(1) }, "loops"},
		{"odd length", func(f []*seccompimg.SeccompFilter, c *criucore.ThreadCoreEntry) { f[0].Filter = f[0].Filter[:5] }, "filter 0: 5 bytes"},
		{"empty", func(f []*seccompimg.SeccompFilter, c *criucore.ThreadCoreEntry) { f[1].Filter = nil }, "filter 1: 0 bytes"},
		{"too long", func(f []*seccompimg.SeccompFilter, c *criucore.ThreadCoreEntry) { f[1].Filter = prog('x', maxInsns+1) }, "filter 1: 32776 bytes"},
		{"listener", func(f []*seccompimg.SeccompFilter, c *criucore.ThreadCoreEntry) {
			f[1].Flags = proto.Uint32(unix.SECCOMP_FILTER_FLAG_NEW_LISTENER)
		}, "flags 0x8"},
		{"no filter", func(f []*seccompimg.SeccompFilter, c *criucore.ThreadCoreEntry) { c.SeccompFilter = nil }, "without seccomp_filter"},
		{"mode", func(f []*seccompimg.SeccompFilter, c *criucore.ThreadCoreEntry) {
			c.SeccompMode = criucore.SeccompMode(7).Enum()
		}, "unknown seccomp mode 7"},
	}
	for _, tt := range tests {
		f := good()
		c := &criucore.ThreadCoreEntry{SeccompMode: criucore.SeccompMode_filter.Enum(), SeccompFilter: proto.Uint32(1)}
		tt.edit(f, c)
		_, err := (&Filters{path: "seccomp.img", filters: f}).ForProcess([]int{42}, []*criucore.ThreadCoreEntry{c})
		if err == nil || !strings.Contains(err.Error(), tt.error) || !strings.Contains(err.Error(), "thread 42") {
			t.Errorf("%s: %v, want an error naming thread 42 and %q", tt.name, err, tt.error)
		}
	}
	p, err := (&Filters{filters: good()}).ForProcess([]int{1}, []*criucore.ThreadCoreEntry{
		{SeccompMode: criucore.SeccompMode_filter.Enum(), SeccompFilter: proto.Uint32(1)}})
	if err != nil || !chainsEqual(p.threads[0].Chain, []Filter{{Prog: prog('a', 2)}, {Prog: prog('b', 2)}}) {
		t.Errorf("good image: %v, %v", p.threads, err)
	}
}
