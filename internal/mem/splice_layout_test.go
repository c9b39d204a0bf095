package mem

import (
	"math/rand/v2"
	"slices"
	"testing"

	"golang.org/x/sys/unix"

	"amber/internal/compel"
)

// testSplicer fills its pipes as a parasite's vmsplice would, from
// /proc/PID/mem, and stops short at random page boundaries as vmsplice
// does at a page the task cannot hand over.
type testSplicer struct {
	t     *testing.T
	task  *compel.Task
	rnd   *rand.Rand
	pipes []int // read ends
	wr    []int // write ends
	size  uint64
	short int // how many calls stopped short
}

func newTestSplicer(t *testing.T, pid int, rnd *rand.Rand, n int, size uint64) *testSplicer {
	s := &testSplicer{t: t, task: &compel.Task{Pid: pid}, rnd: rnd, size: size}
	for range n {
		var fds [2]int
		if err := unix.Pipe2(fds[:], unix.O_CLOEXEC); err != nil {
			t.Fatal(err)
		}
		if _, err := unix.FcntlInt(uintptr(fds[0]), unix.F_SETPIPE_SZ, int(size)); err != nil {
			t.Fatal(err)
		}
		s.pipes, s.wr = append(s.pipes, fds[0]), append(s.wr, fds[1])
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func (s *testSplicer) Pipes() []int     { return s.pipes }
func (s *testSplicer) Capacity() uint64 { return s.size }

func (s *testSplicer) Splice(runs [][]Run) ([]uint64, error) {
	if len(runs) > len(s.pipes) {
		s.t.Fatalf("%d chunks for %d pipes", len(runs), len(s.pipes))
	}
	levels, err := pipeLevels(s.pipes)
	if err != nil {
		return nil, err
	}
	took := make([]uint64, len(runs))
	for i, rs := range runs {
		if levels[i] != 0 {
			s.t.Fatalf("pipe %d holds %d bytes before a splice", i, levels[i])
		}
		var n uint64
		for _, r := range rs {
			n += r.End - r.Start
		}
		if n > s.size {
			s.t.Fatalf("chunk of %d bytes for a pipe of %d", n, s.size)
		}
		if s.rnd.IntN(4) == 0 {
			n = uint64(s.rnd.IntN(int(n/pageSize))) * pageSize
			s.short++
		}
		head, _ := cutRuns(rs, n)
		for _, r := range head {
			b := make([]byte, r.End-r.Start)
			if err := s.task.ReadProcMem(r.Start, b); err != nil {
				return nil, err
			}
			if _, err := unix.Write(s.wr[i], b); err != nil {
				return nil, err
			}
		}
		took[i] = n
	}
	return took, nil
}

func (s *testSplicer) Close() error {
	for _, fd := range append(s.pipes, s.wr...) {
		unix.Close(fd)
	}
	s.pipes, s.wr = nil, nil
	return nil
}

// pipeCheckSink is checkSink that also takes pages from pipes.
type pipeCheckSink struct {
	checkSink
	fromPipe uint64 // bytes taken from pipes
}

func (s *pipeCheckSink) AddFromPipe(vaddr uint64, pipe int, n uint64) error {
	b := make([]byte, n)
	for off := 0; off < len(b); {
		m, err := unix.Read(pipe, b[off:])
		if err != nil {
			return err
		}
		off += m
	}
	s.fromPipe += n
	return s.Add(vaddr, b)
}

// TestSpliceLayouts sends the pages of random layouts to a page server
// through pipes (spliceRuns), with random pieces left to the parent
// images or lazy, with pipes of one page, four pages and 1 MiB, one or
// eight at a time, the splicer stopping short at random pages (what
// vmsplice does at a page it cannot take): the requests must come in
// address order, name each piece with its kind, and carry the task's
// pages, those the pipes did not take copied.
func TestSpliceLayouts(t *testing.T) {
	forPlannedLayouts(t, func(t *testing.T, spec layoutSpec, pid int, plan pagePlan) {
		rnd := rand.New(rand.NewPCG(spec.Seed, 11))
		copied, parent, lazy := splitRandomly(rnd, plan.merged)
		want, total := readRunsSlowly(t, pid, copied)
		var spliced, short uint64
		for _, pipes := range []int{1, splicePipes} {
			for _, size := range []uint64{pageSize, 4 * pageSize, pipeBytes} {
				sp := newTestSplicer(t, pid, rnd, pipes, size)
				var sink pipeCheckSink
				sent, piped, err := spliceRuns(&compel.Task{Pid: pid}, sp, &sink, copied, gapsOf(parent, lazy), intersectRuns(plan.shared, copied), "test", pipeBytes)
				if err != nil {
					t.Fatalf("%d pipes of %d: %v", pipes, size, err)
				}
				if sent != total {
					t.Errorf("%d pipes of %d: sent %d bytes, want %d", pipes, size, sent, total)
				}
				if piped != sink.fromPipe {
					t.Errorf("%d pipes of %d: %d bytes through the pipes, counted %d", pipes, size, sink.fromPipe, piped)
				}
				checkSent(t, size, sink.reqs, copied, parent, lazy, want)
				spliced += sink.fromPipe
				short += uint64(sp.short)
				sp.Close()
			}
		}
		if spliced == 0 || short == 0 {
			t.Fatalf("%d bytes through pipes, %d splices short: the layout does not test them", spliced, short)
		}
	})
}

// TestCutRuns cuts runs at every page and checks both sides.
func TestCutRuns(t *testing.T) {
	runs := []Run{{0, 3 * pageSize}, {5 * pageSize, 6 * pageSize}, {8 * pageSize, 10 * pageSize}}
	var total uint64
	for _, r := range runs {
		total += r.End - r.Start
	}
	for n := uint64(0); n <= total; n += pageSize {
		head, tail := cutRuns(runs, n)
		var h uint64
		for _, r := range head {
			h += r.End - r.Start
		}
		if h != n {
			t.Fatalf("cut at %d: head holds %d bytes", n, h)
		}
		if joined := mergeRuns(append(slices.Clone(head), tail...)); !slices.Equal(joined, mergeRuns(runs)) {
			t.Fatalf("cut at %d: %v and %v do not make %v", n, head, tail, runs)
		}
	}
}
