package pageserver

// Writing pages into the pages images with more than one CPU: the
// session's goroutine splices what the connection received into a pipe
// (the pipe then refers to the connection's buffers, no copy) and hands
// it, with the offset it goes to, to writers that splice it into the
// image, each at its own offset. The copy into the page cache, which is
// the server's work, then runs on every CPU, as a local dump's writes
// do; one goroutine doing it all took longer than the dump to disk.

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// writePipes is how many pipes the writers have: while they empty
// some, the session fills others.
const writePipes = 4

// writePipeBytes is the size asked for each pipe, fs.pipe-max-size's
// default.
const writePipeBytes = 1 << 20

// maxWriters bounds how many goroutines write at once.
const maxWriters = 4

// pipe is a pipe's two ends.
type pipe struct{ r, w int }

// writeJob is what one pipe holds: n bytes for f at off.
type writeJob struct {
	p   pipe
	f   *os.File
	off int64
	n   int
}

// spliceWriter receives pages from a connection into files through
// pipes, written by goroutines of their own.
type spliceWriter struct {
	conn    syscall.RawConn
	free    chan pipe
	jobs    chan writeJob
	pending sync.WaitGroup // jobs not yet written
	workers sync.WaitGroup
	mu      sync.Mutex
	err     error         // the first write that failed
	broken  chan struct{} // closed once err is set
}

// newSpliceWriter starts the writers of pages that conn receives, or
// returns nil where conn has no descriptor to splice from.
func newSpliceWriter(conn any) (*spliceWriter, error) {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return nil, nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil, nil
	}
	s := &spliceWriter{conn: raw, free: make(chan pipe, writePipes), jobs: make(chan writeJob, writePipes), broken: make(chan struct{})}
	for range writePipes {
		p, err := newPipe()
		if err != nil {
			s.close()
			return nil, err
		}
		s.free <- p
	}
	for range min(runtime.NumCPU(), maxWriters) {
		s.workers.Go(s.work)
	}
	return s, nil
}

// newPipe makes a pipe of writePipeBytes, or of the size allowed.
func newPipe() (pipe, error) {
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC); err != nil {
		return pipe{}, fmt.Errorf("pipe: %w", err)
	}
	unix.FcntlInt(uintptr(fds[0]), unix.F_SETPIPE_SZ, writePipeBytes)
	return pipe{fds[0], fds[1]}, nil
}

// copy receives size bytes from the connection and queues them for f
// from off. It returns how many it received; they are written once
// wait returns.
func (s *spliceWriter) copy(f *os.File, off int64, size uint64) (uint64, error) {
	var got uint64
	for got < size {
		var p pipe
		select {
		case p = <-s.free:
		case <-s.broken:
			return got, s.failed()
		}
		n, err := s.receive(p, size-got)
		if err != nil || n == 0 {
			s.free <- p
			if err == nil {
				err = fmt.Errorf("the connection closed after %d of the %d bytes of the pages", got, size)
			}
			return got, err
		}
		s.pending.Add(1)
		s.jobs <- writeJob{p: p, f: f, off: off + int64(got), n: n}
		got += uint64(n)
	}
	return got, nil
}

// receive splices at most n bytes from the connection into p, empty,
// waiting until some come; zero at the end of the stream.
func (s *spliceWriter) receive(p pipe, n uint64) (int, error) {
	var got int
	var serr error
	err := s.conn.Read(func(fd uintptr) bool {
		for {
			m, err := unix.Splice(int(fd), nil, p.w, nil, int(n), unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
			switch {
			case err == unix.EINTR:
				continue
			case err == unix.EAGAIN:
				// The pipe is empty: the connection has nothing yet.
				return false
			case err != nil:
				serr = fmt.Errorf("splice from the connection: %w", err)
			}
			got = int(m)
			return true
		}
	})
	return got, errors.Join(err, serr)
}

// work writes the jobs until there are none. A pipe whose job failed
// may still hold some of it: it is closed, not filled again.
func (s *spliceWriter) work() {
	for j := range s.jobs {
		if err := write(j); err != nil {
			s.fail(err)
			unix.Close(j.p.r)
			unix.Close(j.p.w)
		} else {
			s.free <- j.p
		}
		s.pending.Done()
	}
}

// fail records the first error of a write and wakes a session waiting
// for a pipe.
func (s *spliceWriter) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.err = err
		close(s.broken)
	}
}

// failed is the first error of a write, if any.
func (s *spliceWriter) failed() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// wait waits until every page received is written, and returns the
// first error of a write.
func (s *spliceWriter) wait() error {
	s.pending.Wait()
	return s.failed()
}

// close stops the writers, once they wrote what they had, and closes the
// pipes.
func (s *spliceWriter) close() {
	close(s.jobs)
	s.workers.Wait()
	for {
		select {
		case p := <-s.free:
			unix.Close(p.r)
			unix.Close(p.w)
		default:
			return
		}
	}
}

// write splices a job's bytes into its file at its offset.
func write(j writeJob) error {
	off := j.off
	for n := j.n; n > 0; {
		m, err := unix.Splice(j.p.r, nil, int(j.f.Fd()), &off, n, unix.SPLICE_F_MOVE)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("%s: splice at %d: %w", j.f.Name(), off, err)
		}
		if m == 0 {
			return fmt.Errorf("%s: splice at %d: nothing written", j.f.Name(), off)
		}
		n -= int(m)
	}
	return nil
}
