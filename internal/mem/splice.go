package mem

// Sending pages to a page server without copying them, as CRIU's
// parasite does: the dumped process vmsplices its own pages into pipes
// (the pipes then hold references to its pages, not copies), and amber
// splices the pipes into the connection, whose buffers take the same
// references. The only copy left is the page server's, into its pages
// image. A dump that reads the pages with process_vm_readv and writes
// them to the socket copies them twice more.
//
// The references see the pages as they are when the data leaves: the
// process must not write them until the page server has taken them.
// It does not: the tree stays frozen until the page server answered the
// end of the session, which it does once every page is in its images.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"iter"
	"slices"

	"golang.org/x/sys/unix"

	"amber/internal/compel"
	"amber/internal/progress"
)

// Splicer moves pages of a frozen task into pipes without copying them.
type Splicer interface {
	// Pipes are amber's read ends of the pipes, each holding up to
	// Capacity bytes of pages.
	Pipes() []int
	// Capacity is how many bytes of whole pages one pipe holds.
	Capacity() uint64
	// Splice moves the pages of runs[i] (at most Capacity bytes) into
	// pipe i, in address order, and returns how many bytes each took:
	// fewer than its runs hold, from the first page the task could not
	// hand over (a PROT_NONE mapping). Each pipe must be empty.
	Splice(runs [][]Run) ([]uint64, error)
	// Close closes the pipes.
	Close() error
}

// PipeSink is a PageSink that also takes pages from a pipe.
type PipeSink interface {
	PageSink
	// AddFromPipe sends the contents of n bytes of whole pages at vaddr,
	// the next n bytes of pipe.
	AddFromPipe(vaddr uint64, pipe int, n uint64) error
}

// Parasite runs system calls inside a frozen process
// (compel.ThreadParasite).
type Parasite interface {
	// Batch runs calls in the process and returns their results, or
	// stops at the first that fails with a *compel.TableError.
	Batch(calls []compel.Call) ([]uint64, error)
	// Data is where in the process the calls of a batch may keep data,
	// compel.DataSize bytes.
	Data() uint64
	// Read copies the process's memory at addr into buf.
	Read(addr uint64, buf []byte) error
}

// splicePipes is how many pipes the task fills with one batch of calls
// before amber empties them: each batch is a ptrace round trip.
const splicePipes = 8

// pipeBytes is the size asked for each pipe: fs.pipe-max-size's default,
// above which amber, without CAP_SYS_RESOURCE, may not go.
const pipeBytes = 1 << 20

// spliceMinRun is the average size of the runs of a chunk from which
// it goes through a pipe: smaller runs cost a request and a splice each,
// more than copying them into one batched write.
const spliceMinRun = 16 << 10

// taskPipes are pipes whose write ends are in the dumped process, into
// which its parasite vmsplices its pages.
type taskPipes struct {
	task     *compel.Task
	par      Parasite
	write    []int // the write ends, descriptors of the task
	read     []int // the read ends, amber's
	capacity uint64
}

// NewTaskPipes makes pipes in the frozen task t, which par runs calls
// in: the task keeps the write ends, amber takes the read ends. The
// caller must Close them before the task's descriptors are dumped, or
// the dump would record them.
func NewTaskPipes(t *compel.Task, par Parasite) (Splicer, error) {
	p := &taskPipes{task: t, par: par}
	if err := p.open(); err != nil {
		return nil, errors.Join(err, p.Close())
	}
	return p, nil
}

// open makes the pipes in the task and takes their read ends. A task
// that can make only some (at its limit of descriptors) gets those.
func (p *taskPipes) open() error {
	data := p.par.Data()
	calls := make([]compel.Call, splicePipes)
	for i := range calls {
		calls[i] = compel.Call{Nr: unix.SYS_PIPE2, Args: [6]uint64{data + uint64(8*i), unix.O_CLOEXEC}}
	}
	made := splicePipes
	if _, err := p.par.Batch(calls); err != nil {
		var failed *compel.TableError
		if !errors.As(err, &failed) {
			return fmt.Errorf("pipes in pid %d: %w", p.task.Pid, err)
		}
		made = failed.Index
	}
	if made == 0 {
		return fmt.Errorf("pid %d could make no pipe", p.task.Pid)
	}
	fds := make([]byte, 8*made)
	if err := p.par.Read(data, fds); err != nil {
		return err
	}
	var read []int
	for i := range made {
		read = append(read, int(binary.LittleEndian.Uint32(fds[8*i:])))
		p.write = append(p.write, int(binary.LittleEndian.Uint32(fds[8*i+4:])))
	}
	err := p.take(read)
	if err == nil && len(p.read) == 0 {
		err = fmt.Errorf("pid %d could make no pipe", p.task.Pid)
	}
	if err != nil {
		return err
	}
	return p.grow()
}

// take copies the read ends of the task's pipes into amber and closes
// them in the task, which keeps only the write ends.
func (p *taskPipes) take(read []int) error {
	var errs []error
	pidfd, err := unix.PidfdOpen(p.task.Pid, 0)
	if err != nil {
		errs = append(errs, fmt.Errorf("pidfd_open %d: %w", p.task.Pid, err))
	} else {
		defer unix.Close(pidfd)
	}
	var closes []compel.Call
	for _, fd := range read {
		closes = append(closes, compel.Call{Nr: unix.SYS_CLOSE, Args: [6]uint64{uint64(fd)}})
		if err != nil {
			continue
		}
		mine, gerr := unix.PidfdGetfd(pidfd, fd, 0)
		if gerr != nil {
			err = fmt.Errorf("take pipe of pid %d: pidfd_getfd: %w", p.task.Pid, gerr)
			errs = append(errs, err)
			continue
		}
		p.read = append(p.read, mine)
	}
	if len(closes) > 0 {
		if _, cerr := p.par.Batch(closes); cerr != nil {
			errs = append(errs, fmt.Errorf("pipes in pid %d: %w", p.task.Pid, cerr))
		}
	}
	return errors.Join(errs...)
}

// grow makes every pipe pipeBytes large, or as large as allowed.
func (p *taskPipes) grow() error {
	p.capacity = ^uint64(0)
	for _, fd := range p.read {
		size, err := unix.FcntlInt(uintptr(fd), unix.F_SETPIPE_SZ, pipeBytes)
		if err != nil {
			if size, err = unix.FcntlInt(uintptr(fd), unix.F_GETPIPE_SZ, 0); err != nil {
				return fmt.Errorf("pipe size: %w", err)
			}
		}
		p.capacity = min(p.capacity, uint64(size))
	}
	return nil
}

func (p *taskPipes) Pipes() []int     { return p.read }
func (p *taskPipes) Capacity() uint64 { return p.capacity }

// Splice runs one vmsplice per pipe in the task, all in one batch. A
// call that fails stops the batch; the pipes say what each took.
func (p *taskPipes) Splice(runs [][]Run) ([]uint64, error) {
	data := p.par.Data()
	var iovs []byte
	calls := make([]compel.Call, len(runs))
	for i, rs := range runs {
		at := data + uint64(len(iovs))
		for _, r := range rs {
			iovs = binary.LittleEndian.AppendUint64(iovs, r.Start)
			iovs = binary.LittleEndian.AppendUint64(iovs, r.End-r.Start)
		}
		calls[i] = compel.Call{Nr: unix.SYS_VMSPLICE, Args: [6]uint64{uint64(p.write[i]), at, uint64(len(rs)), unix.SPLICE_F_NONBLOCK}}
	}
	if len(iovs) > compel.DataSize {
		return nil, fmt.Errorf("vmsplice of %d ranges: more than the parasite's data", len(iovs)/16)
	}
	if err := p.task.WriteMem(data, iovs); err != nil {
		return nil, err
	}
	if _, err := p.par.Batch(calls); err != nil {
		var failed *compel.TableError
		if !errors.As(err, &failed) {
			return nil, err
		}
	}
	return pipeLevels(p.read[:len(runs)])
}

// pipeLevels is how many bytes each pipe holds.
func pipeLevels(pipes []int) ([]uint64, error) {
	out := make([]uint64, len(pipes))
	for i, fd := range pipes {
		// TIOCINQ is FIONREAD, which pipes answer.
		n, err := unix.IoctlGetInt(fd, unix.TIOCINQ)
		if err != nil {
			return nil, fmt.Errorf("pipe level: %w", err)
		}
		out[i] = uint64(n)
	}
	return out, nil
}

// Close closes both ends of every pipe.
func (p *taskPipes) Close() error {
	var errs []error
	for _, fd := range p.read {
		errs = append(errs, unix.Close(fd))
	}
	p.read = nil
	var calls []compel.Call
	for _, fd := range p.write {
		calls = append(calls, compel.Call{Nr: unix.SYS_CLOSE, Args: [6]uint64{uint64(fd)}})
	}
	p.write = nil
	if len(calls) > 0 {
		if _, err := p.par.Batch(calls); err != nil {
			errs = append(errs, fmt.Errorf("close pipes in pid %d: %w", p.task.Pid, err))
		}
	}
	return errors.Join(errs...)
}

// spliceChunk is one chunk of runs and whether it goes through a pipe.
type spliceChunk struct {
	runs    []Run
	spliced bool
}

// spliceRuns is sendRuns through sp: chunks of runs the size of a pipe
// go through sp's pipes, a batch of pipes at a time, and what the task
// could not hand over, or chunks of runs too small to be worth a splice
// each, are read and sent as sendRuns does. It returns how many bytes
// of pages it sent, and how many of them through the pipes.
func spliceRuns(t *compel.Task, sp Splicer, sink PipeSink, copied []Run, gaps []gap, shared []Run, label string, chunk uint64) (sent, piped uint64, err error) {
	bar := progress.New(label, runsBytes(copied))
	defer bar.Done()
	next, stop := iter.Pull(chunks(copied, min(chunk, sp.Capacity())))
	defer stop()
	var buf []byte
	for {
		group := nextGroup(next, len(sp.Pipes()))
		if len(group) == 0 {
			break
		}
		var spliced [][]Run
		for _, c := range group {
			if c.spliced {
				spliced = append(spliced, c.runs)
			}
		}
		var took []uint64
		if len(spliced) > 0 {
			if took, err = sp.Splice(spliced); err != nil {
				return sent, piped, err
			}
		}
		pipe := 0
		for _, c := range group {
			rest := c.runs
			if c.spliced {
				var head []Run
				head, rest = cutRuns(c.runs, took[pipe])
				if gaps, err = sendFromPipe(sink, head, sp.Pipes()[pipe], gaps); err != nil {
					return sent, piped, err
				}
				piped += took[pipe]
				pipe++
			}
			if gaps, buf, err = copyRest(t, sink, rest, shared, gaps, buf); err != nil {
				return sent, piped, err
			}
			sent += runsBytes(c.runs)
			bar.Set(sent)
		}
	}
	_, err = sendGaps(sink, gaps, ^uint64(0))
	return sent, piped, err
}

// nextGroup takes the next chunks from next, up to pipes of them worth a
// splice and any not worth one between them.
func nextGroup(next func() ([]Run, bool), pipes int) []spliceChunk {
	var group []spliceChunk
	for n := 0; n < pipes; {
		runs, ok := next()
		if !ok {
			break
		}
		c := spliceChunk{runs: slices.Clone(runs), spliced: worthSplicing(runs)}
		if c.spliced {
			n++
		}
		group = append(group, c)
	}
	return group
}

// worthSplicing reports whether the runs of a chunk are large enough on
// average to go through a pipe.
func worthSplicing(runs []Run) bool {
	return runsBytes(runs) >= spliceMinRun*uint64(len(runs))
}

// cutRuns splits runs after their first n bytes.
func cutRuns(runs []Run, n uint64) (head, tail []Run) {
	for i, r := range runs {
		size := r.End - r.Start
		if n >= size {
			n -= size
			continue
		}
		if n == 0 {
			return runs[:i:i], runs[i:]
		}
		head = append(slices.Clone(runs[:i]), Run{r.Start, r.Start + n})
		tail = append([]Run{{r.Start + n, r.End}}, runs[i+1:]...)
		return head, tail
	}
	return runs, nil
}

// sendFromPipe sends the runs, which pipe holds, each after the gaps
// before it, and returns the gaps left.
func sendFromPipe(sink PipeSink, runs []Run, pipe int, gaps []gap) ([]gap, error) {
	for _, r := range runs {
		var err error
		if gaps, err = sendGaps(sink, gaps, r.Start); err != nil {
			return nil, err
		}
		if err := sink.AddFromPipe(r.Start, pipe, r.End-r.Start); err != nil {
			return nil, err
		}
	}
	return gaps, nil
}

// copyRest reads the runs from the task into buf (grown as needed) and
// sends them, each after the gaps before it; it returns the gaps left
// and the buffer.
func copyRest(t *compel.Task, sink PageSink, runs, shared []Run, gaps []gap, buf []byte) ([]gap, []byte, error) {
	if len(runs) == 0 {
		return gaps, buf, nil
	}
	n := runsBytes(runs)
	if uint64(cap(buf)) < n {
		buf = make([]byte, n)
	}
	c := sentChunk{runs: runs, buf: buf[:n]}
	if err := readRuns(t, runs, shared, c.buf); err != nil {
		return nil, buf, err
	}
	gaps, err := sendChunk(sink, c, gaps)
	return gaps, buf, err
}
