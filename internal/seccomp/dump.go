package seccomp

import (
	"encoding/binary"
	"fmt"

	criucore "github.com/checkpoint-restore/go-criu/v8/crit/images/criu-core"
	seccompimg "github.com/checkpoint-restore/go-criu/v8/crit/images/seccomp"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/compel"
)

// Table collects the filters of a dumped tree for seccomp.img.
type Table struct {
	filters []*seccompimg.SeccompFilter
	// chains finds the index of a chain written before, by its contents.
	chains map[string]uint32
}

// NewTable returns an empty table.
func NewTable() *Table { return &Table{chains: map[string]uint32{}} }

// AddProcess records the seccomp state of the threads of one process
// (the leader first) in their thread_core entries, cores[i] being
// threads[i]'s.
func (t *Table) AddProcess(threads []Thread, cores []*criucore.ThreadCoreEntry) {
	threads = tsync(threads)
	for i, th := range threads {
		switch th.Mode {
		case ModeStrict:
			cores[i].SeccompMode = criucore.SeccompMode_strict.Enum()
		case ModeFilter:
			cores[i].SeccompMode = criucore.SeccompMode_filter.Enum()
			cores[i].SeccompFilter = proto.Uint32(t.add(th.Chain))
		}
	}
}

// tsync applies CRIU's convention: when every thread has the leader's
// chain, the leader carries it, flagged TSYNC, and the others nothing.
func tsync(threads []Thread) []Thread {
	leader := threads[0]
	if leader.Mode != ModeFilter {
		return threads
	}
	for _, th := range threads[1:] {
		if th.Mode != ModeFilter || !same(th.Chain, leader.Chain) {
			return threads
		}
	}
	out := make([]Thread, len(threads))
	chain := make([]Filter, len(leader.Chain))
	for i, f := range leader.Chain {
		chain[i] = Filter{Prog: f.Prog, Flags: f.Flags | unix.SECCOMP_FILTER_FLAG_TSYNC}
	}
	out[0] = Thread{Mode: ModeFilter, Chain: chain}
	return out
}

// add writes a chain once and returns the index of its first filter. As
// CRIU does, the newest filter is written first and each older one names
// the one written before it as prev, the next to install.
func (t *Table) add(chain []Filter) uint32 {
	k := key(chain)
	if i, ok := t.chains[k]; ok {
		return i
	}
	for i := len(chain) - 1; i >= 0; i-- {
		f := &seccompimg.SeccompFilter{Filter: chain[i].Prog, Flags: proto.Uint32(chain[i].Flags)}
		if i != len(chain)-1 {
			f.Prev = proto.Uint32(uint32(len(t.filters) - 1))
		}
		t.filters = append(t.filters, f)
	}
	start := uint32(len(t.filters) - 1)
	t.chains[k] = start
	return start
}

// key identifies a chain by its contents.
func key(chain []Filter) string {
	var b []byte
	for _, f := range chain {
		b = binary.LittleEndian.AppendUint32(b, f.Flags)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(f.Prog)))
		b = append(b, f.Prog...)
	}
	return string(b)
}

// Empty tells whether no thread of the tree has filters: then there is no
// seccomp.img to write.
func (t *Table) Empty() bool { return len(t.filters) == 0 }

// Entry is the one entry of seccomp.img.
func (t *Table) Entry() *seccompimg.SeccompEntry {
	return &seccompimg.SeccompEntry{SeccompFilters: t.filters}
}

// Collect reads the seccomp state of a frozen thread whose /proc status
// says mode, and suspends its filters for as long as amber traces it, so
// that the calls the dump makes it run are not filtered.
func Collect(task *compel.Task, mode int) (Thread, error) {
	switch mode {
	case ModeDisabled:
		return Thread{}, nil
	case ModeStrict, ModeFilter:
	default:
		return Thread{}, fmt.Errorf("unknown seccomp mode %d", mode)
	}
	if err := task.SuspendSeccomp(); err != nil {
		return Thread{}, err
	}
	if mode == ModeStrict {
		return Thread{Mode: ModeStrict}, nil
	}
	filters, err := task.SeccompFilters()
	if err != nil {
		return Thread{}, err
	}
	if len(filters) == 0 {
		return Thread{}, fmt.Errorf("pid %d: seccomp filter mode without filters", task.Pid)
	}
	th := Thread{Mode: ModeFilter}
	for _, f := range filters {
		th.Chain = append(th.Chain, Filter{Prog: f.Prog, Flags: f.Flags})
	}
	return th, nil
}
