package pageserver

// Lazy pages over the protocol (CRIU's dump --lazy-pages and lazy-pages
// --page-server): the dump leaves the pages of private anonymous memory
// out of its images and serves them from the frozen tree; the
// lazy-pages daemon on the destination asks for them with GET, by the
// process's PID in the images (the destination of a GET is the plain
// PID, not an encoded Dest) and the address at the dump. Each GET is
// answered with an ADD_F request flagged PE_PRESENT for the same
// process and address, counting at most the pages asked for, then their
// contents. The daemon ends the session with CLOSE once every page is
// in; the dump then kills the tree.

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"amber/internal/log"
)

// maxGet bounds the pages one answer to GET carries, and so the
// buffer the server reads them into: the daemon asks again for the
// rest.
const maxGet = 4 << 20

// PageReader reads the pages a dump left lazy.
type PageReader interface {
	// ReadPages reads pages of process pid (its PID in the images) from
	// vaddr on into buf, whole pages, and returns how many bytes it
	// read: at least a page, fewer than len(buf) where the lazy pages
	// end. Pages the dump did not leave lazy are an error.
	ReadPages(pid int, vaddr uint64, buf []byte) (int, error)
}

// LazyStats counts what a lazy session served.
type LazyStats struct {
	Requests uint64 // GETs answered
	Bytes    uint64 // bytes of pages sent
}

// ErrLazyNotClosed is the error of a lazy session whose daemon went
// away before it had every page.
var ErrLazyNotClosed = errors.New("the lazy-pages daemon closed the connection before it ended the session (CLOSE): its restore may lack pages")

// ServeLazy answers the GETs of one lazy-pages daemon on conn from src
// until the daemon ends the session (CLOSE) and closes the connection.
func ServeLazy(conn io.ReadWriter, src PageReader, l *log.Logger) (LazyStats, error) {
	if l == nil {
		l = log.Discard()
	}
	var st LazyStats
	var b [RequestSize]byte
	var buf []byte
	for {
		if _, err := io.ReadFull(conn, b[:]); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return st, ErrLazyNotClosed
			}
			return st, fmt.Errorf("read request: %w", err)
		}
		r := ParseRequest(b[:])
		switch r.Cmd {
		case CmdGet:
		case CmdClose, CmdForceClose:
			return st, closeLazy(conn, l)
		default:
			return st, fmt.Errorf("%v: not a request of a lazy-pages daemon", r)
		}
		if r.NrPages == 0 {
			return st, fmt.Errorf("GET of no pages at %#x of pid %d", r.Vaddr, r.Dest)
		}
		want := min(r.Bytes(), maxGet)
		if uint64(len(buf)) < want {
			buf = make([]byte, want)
		}
		n, err := src.ReadPages(int(r.Dest), r.Vaddr, buf[:want])
		if err != nil {
			return st, fmt.Errorf("GET %#x+%d pages of pid %d: %w", r.Vaddr, r.NrPages, r.Dest, err)
		}
		if err := answerGet(conn, r, buf[:n]); err != nil {
			return st, err
		}
		st.Requests++
		st.Bytes += uint64(n)
	}
}

// answerGet sends the answer to GET r: an ADD_F of the pages, then them.
func answerGet(conn io.Writer, r Request, pages []byte) error {
	a := Request{Cmd: CmdAddF, Flags: FlagPresent, NrPages: uint64(len(pages)) / PageSize, Vaddr: r.Vaddr, Dest: r.Dest}
	var hdr [RequestSize]byte
	a.Marshal(hdr[:])
	bufs := net.Buffers{hdr[:], pages}
	if _, err := bufs.WriteTo(conn); err != nil {
		return fmt.Errorf("answer GET %#x of pid %d: %w", r.Vaddr, r.Dest, err)
	}
	return nil
}

// closeLazy answers the end of the session and waits for the daemon to
// close the connection.
func closeLazy(conn io.ReadWriter, l *log.Logger) error {
	if _, err := conn.Write(make([]byte, 4)); err != nil {
		return fmt.Errorf("answer CLOSE: %w", err)
	}
	var b [1]byte
	n, err := conn.Read(b[:])
	switch {
	case n > 0:
		return errors.New("the lazy-pages daemon sent more after the end of the session")
	case err != nil && !errors.Is(err, io.EOF):
		// The daemon had every page: a reset is not the session's
		// failure.
		l.Warnf("lazy pages: after the session: %v", err)
	}
	return nil
}

// Source is a lazy-pages daemon's connection to the page server of a
// dump --lazy-pages. Safe for concurrent use: requests take turns. Once
// a request failed, every later one fails with its error.
type Source struct {
	mu  sync.Mutex
	c   *Client
	err error
}

// DialSource connects to the lazy pages served at addr (host:port).
// The connection, and each request, may take at most timeout (zero: no
// bound).
func DialSource(addr string, timeout time.Duration) (*Source, error) {
	c, err := Dial(addr, timeout)
	if err != nil {
		return nil, err
	}
	return &Source{c: c}, nil
}

// NewSource speaks the protocol on conn, a connection to the lazy
// pages served at addr (which errors name).
func NewSource(conn io.ReadWriteCloser, addr string) *Source {
	return &Source{c: NewClient(conn, addr)}
}

// Fetch reads len(buf) bytes, whole pages, of process pid (its PID in
// the images) at vaddr (its address at the dump), in as many GETs as
// the server needs.
func (s *Source) Fetch(pid int, vaddr uint64, buf []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	for len(buf) > 0 {
		n, err := s.c.get(pid, vaddr, buf)
		if err != nil {
			s.err = err
			s.c.Abort() // a later request must not read this one's answer
			return err
		}
		vaddr += uint64(n)
		buf = buf[n:]
	}
	return nil
}

// Close ends the session (CLOSE): the dump may then kill its tree.
func (s *Source) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	s.err = errors.New("the session is closed")
	return s.c.Close()
}

// Abort drops the connection without ending the session: the dump
// then lets its tree run on. It closes the connection before it takes
// the lock, so that a fetch waiting on the connection (which holds the
// lock) fails at once instead of holding Abort until its timeout.
func (s *Source) Abort() {
	s.c.Abort()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.err = errors.New("the session is aborted")
	}
}

// get sends one GET for the pages of buf and reads its answer into
// buf; it returns how many bytes came.
func (c *Client) get(pid int, vaddr uint64, buf []byte) (int, error) {
	r := Request{Cmd: CmdGet, NrPages: uint64(len(buf)) / PageSize, Vaddr: vaddr, Dest: uint64(pid)}
	if len(buf)%PageSize != 0 || len(buf) == 0 {
		return 0, c.fail(r, fmt.Errorf("%d bytes: not whole pages", len(buf)))
	}
	var hdr [RequestSize]byte
	if err := c.ask(r, hdr[:]); err != nil {
		return 0, err
	}
	a := ParseRequest(hdr[:])
	if a.Cmd != CmdAddF || a.Flags != FlagPresent || a.Vaddr != vaddr || a.Dest != r.Dest || a.NrPages == 0 || a.NrPages > r.NrPages {
		return 0, c.fail(r, fmt.Errorf("answered with %v", a))
	}
	n := int(a.Bytes())
	if _, err := io.ReadFull(c.conn, buf[:n]); err != nil {
		return 0, c.fail(r, fmt.Errorf("the pages: %w", err))
	}
	return n, nil
}
