package pageserver

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/pagemap"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/image"
	"amber/internal/log"
	"amber/internal/mem"
)

// FirstPagesID is the number of the first pages image a page server
// writes, as CRIU's does: high enough that the pages images of shared
// memory, which the dumper writes itself into the same directory, keep
// their own numbers.
const FirstPagesID = 0x10001

// ErrNotClosed is the error of a session whose client went away without
// ending it: its dump failed.
var ErrNotClosed = errors.New("the client closed the connection before it ended the session: its dump failed")

// Stats counts what a session received.
type Stats struct {
	Dests int    // destinations opened
	Pages uint64 // pages written to pages images
	Holes uint64 // pages left to the parent images
}

// server is one session: the images it writes into dir.
type server struct {
	conn io.ReadWriter
	// in reads conn: requests and small runs of pages come through it,
	// many to a read, once a small run came (ahead); larger runs are
	// spliced from conn once in holds nothing.
	in      *bufio.Reader
	ahead   bool
	dir     image.Dir
	log     *log.Logger
	nextID  uint32
	cur     *destWriter
	created []image.Path // every image written, removed if the session fails
	stats   Stats
	// sw writes the pages with more than one CPU; nil where the
	// connection has no descriptor to splice from.
	sw *spliceWriter
	// shared: the connection goes on after the session (ServeShared).
	shared bool
}

// Serve receives one session on conn and writes its pagemap and pages
// images into dir. It returns once the client ended the session (CLOSE)
// and closed the connection. If the session fails, the images it wrote
// are removed.
func Serve(conn io.ReadWriter, dir image.Dir, l *log.Logger) (Stats, error) {
	return runSession(&server{conn: conn, dir: dir, log: l})
}

// ServeShared is Serve on a connection that goes on after the session,
// as CRIU's page server serves --ps-socket (go-criu's phaul sends every
// pre-dump and the dump over one connection, each to a page server of
// its own): it returns once it answered the end of the session. Nothing
// of the next session can be read with it: the client sends no more
// until that answer.
func ServeShared(conn io.ReadWriter, dir image.Dir, l *log.Logger) (Stats, error) {
	return runSession(&server{conn: conn, dir: dir, log: l, shared: true})
}

// runSession serves the session of s, its connection, directory, log
// and sharing set.
func runSession(s *server) (Stats, error) {
	if s.log == nil {
		s.log = log.Discard()
	}
	conn := s.conn
	s.in, s.nextID = bufio.NewReaderSize(conn, inBuffer), FirstPagesID
	sw, err := newSpliceWriter(conn)
	if err != nil {
		return s.stats, err
	}
	if sw != nil {
		s.sw = sw
		defer sw.close()
	}
	if err = s.serve(); err != nil {
		s.abort()
	}
	return s.stats, err
}

// serve runs requests until the client ends the session.
func (s *server) serve() error {
	var b [RequestSize]byte
	for {
		if err := s.readFull(b[:]); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return ErrNotClosed
			}
			return fmt.Errorf("read request: %w", err)
		}
		r := ParseRequest(b[:])
		if r.Cmd == CmdClose || r.Cmd == CmdForceClose {
			return s.close()
		}
		if err := s.handle(r); err != nil {
			return fmt.Errorf("%v: %w", r, err)
		}
	}
}

// handle runs one request other than the close.
func (s *server) handle(r Request) error {
	switch r.Cmd {
	case CmdOpen, CmdOpen2:
		parent, err := s.open(DecodeDest(r.Dest))
		if err != nil || r.Cmd == CmdOpen {
			return err
		}
		return s.answer([]byte{boolByte(parent)})
	case CmdParent:
		parent, err := s.hasParent(DecodeDest(r.Dest))
		if err != nil {
			return err
		}
		var b [4]byte
		binary.LittleEndian.PutUint32(b[:], uint32(boolByte(parent)))
		return s.answer(b[:])
	case CmdAdd, CmdHole, CmdAddF:
		return s.add(r)
	case CmdGet:
		return errors.New("a GET of lazy pages, which a dump --lazy-pages serves, not a page server")
	}
	return errors.New("unknown command")
}

func boolByte(b bool) byte {
	if b {
		return 1
	}
	return 0
}

// answer writes an answer to the client.
func (s *server) answer(b []byte) error {
	if _, err := s.conn.Write(b); err != nil {
		return fmt.Errorf("answer: %w", err)
	}
	return nil
}

// open starts writing the images of d, ending those of the destination
// before, and reports whether d has parent images.
func (s *server) open(d Dest) (bool, error) {
	if d.Kind == KindUnknown {
		return false, errors.New("unknown destination type")
	}
	if err := s.finish(); err != nil {
		return false, err
	}
	w, err := s.newDestWriter(d)
	if err != nil {
		return false, err
	}
	s.cur = w
	s.stats.Dests++
	s.log.Infof("page server: receiving the pages of %v into %s", d, w.pages.Name())
	return w.parent != nil, nil
}

// add records the pages of an ADD, HOLE or ADD_F and copies their
// contents. A request for another destination than the one open opens
// it, as CRIU does for the clients that never open (before OPEN).
func (s *server) add(r Request) error {
	if s.cur == nil || s.cur.dest != DecodeDest(r.Dest) {
		if _, err := s.open(DecodeDest(r.Dest)); err != nil {
			return err
		}
	}
	flags := r.PageFlags()
	if r.NrPages == 0 {
		return errors.New("no pages")
	}
	if flags&FlagParent != 0 {
		if err := s.cur.checkHole(r.Vaddr, r.NrPages); err != nil {
			return err
		}
		s.stats.Holes += r.NrPages
	}
	if err := s.cur.entry(r.Vaddr, r.NrPages, flags); err != nil {
		return err
	}
	if flags&FlagPresent == 0 {
		return nil
	}
	s.stats.Pages += r.NrPages
	s.ahead = r.Bytes() < spliceMin
	return s.cur.copyPages(s.in, s.conn, r.Bytes())
}

// readFull reads len(p) bytes of the session: through in, reading ahead,
// after a small run of pages; else what in holds and the rest from the
// connection itself, so that a large run after a request is spliced
// whole, as a dump of a process's memory sends them one after the other.
func (s *server) readFull(p []byte) error {
	if s.ahead {
		_, err := io.ReadFull(s.in, p)
		return err
	}
	n := min(s.in.Buffered(), len(p))
	if _, err := io.ReadFull(s.in, p[:n]); err != nil {
		return err
	}
	_, err := io.ReadFull(s.conn, p[n:])
	return err
}

// close ends the session: every image is written and closed, the client
// told so, and, unless the connection is shared, the server waits for
// it to close the connection.
func (s *server) close() error {
	if err := s.finish(); err != nil {
		return err
	}
	if err := s.answer(make([]byte, 4)); err != nil {
		return err
	}
	if s.shared {
		return nil
	}
	var b [1]byte
	n, err := s.in.Read(b[:])
	switch {
	case n > 0:
		return errors.New("the client sent more after the end of the session")
	case err != nil && !errors.Is(err, io.EOF):
		// The images are complete: a reset instead of a close is not
		// the session's failure.
		s.log.Warnf("page server: after the session: %v", err)
	}
	return nil
}

// finish writes and closes the images of the destination open, if any.
func (s *server) finish() error {
	if s.cur == nil {
		return nil
	}
	w := s.cur
	s.cur = nil
	return w.close()
}

// abort closes and removes every image of a failed session.
func (s *server) abort() {
	if s.sw != nil {
		s.sw.wait()
	}
	if s.cur != nil {
		s.cur.pm.Close()
		s.cur.pages.Close()
		s.cur = nil
	}
	for _, p := range s.created {
		if err := p.Remove(); err != nil && !errors.Is(err, os.ErrNotExist) {
			s.log.Warnf("page server: remove %s of the failed session: %v", p, err)
		}
	}
}

// A page server receives a dump's runs of pages as they are: a final
// dump of a process writing at random sends thousands of single pages,
// each with a request of its own. Read one by one, each cost the session
// four system calls and a hand-over to a writer; those of a run shorter
// than spliceMin come through the session's read buffer (inBuffer)
// instead, many to a read, and are written to the pages image in one
// write of up to pendMax (BenchmarkServeScattered: best 6.6 us a page,
// from 9.9; most of what is left is the page cache's write). It reads
// ahead only after a small run: the start of a large run it read ahead
// would be copied through it, not spliced, and a bulk dump sends runs
// of a megabyte one after the other.
const (
	inBuffer  = 64 << 10
	spliceMin = 64 << 10
	pendMax   = 1 << 20
)

// destWriter writes the images of one destination.
type destWriter struct {
	dest  Dest
	pm    *image.Writer
	pages *os.File
	// last is the entry of the pages received last, written once the
	// next ones do not continue it: a run the client cut in pieces is
	// one entry, as in a local dump.
	last *pagemap.PagemapEntry
	// parent are the pages the parent images hold for dest, nil without
	// parent images.
	parent []mem.Run
	// size is how many bytes of pages were written, reserved how many
	// the pages image has blocks for (see reserve).
	size, reserved uint64
	// sw writes the pages, if not nil.
	sw *spliceWriter
	// pend are pages read through the session's buffer, not written
	// yet: they go at pendOff of the pages image.
	pend    []byte
	pendOff uint64
}

// Reserving blocks for the pages image ahead of its writes, as a local
// dump reserves its whole image first, spares each write the
// filesystem's delayed allocation (a quarter of the server's CPU time
// on ext4): the image grows by reserveMin, then by what it holds, up to
// reserveMax at a time, and is cut to its size when it is closed.
const (
	reserveMin = 4 << 20
	reserveMax = 256 << 20
)

// reserve reserves blocks for n more bytes of pages. Where the
// filesystem cannot, writes allocate them, as they would have.
func (w *destWriter) reserve(n uint64) {
	if w.size+n <= w.reserved {
		return
	}
	grow := max(w.size+n-w.reserved, min(max(w.reserved, reserveMin), reserveMax))
	if err := unix.Fallocate(int(w.pages.Fd()), 0, int64(w.reserved), int64(grow)); err != nil {
		w.reserved = ^uint64(0)
		return
	}
	w.reserved += grow
}

// newDestWriter creates the pagemap and pages images of d.
func (s *server) newDestWriter(d Dest) (*destWriter, error) {
	parent, err := s.parentRuns(d)
	if err != nil {
		return nil, err
	}
	id := s.nextID
	s.nextID++
	pmPath, pagesPath := s.dir.File(d.ImageName()), s.dir.PagesPath(id)
	s.created = append(s.created, pmPath, pagesPath)
	pm, err := image.Create(pmPath, image.Pagemap)
	if err != nil {
		return nil, err
	}
	if err := pm.Write(&pagemap.PagemapHead{PagesId: proto.Uint32(id)}); err != nil {
		pm.Close()
		return nil, err
	}
	pages, err := pagesPath.Create()
	if err != nil {
		pm.Close()
		return nil, err
	}
	return &destWriter{dest: d, pm: pm, pages: pages, parent: parent, sw: s.sw}, nil
}

// entry records n pages at vaddr with flags.
func (w *destWriter) entry(vaddr, n uint64, flags uint32) error {
	if l := w.last; l != nil && l.GetFlags() == flags && l.GetVaddr()+l.GetNrPages()*PageSize == vaddr {
		l.NrPages = proto.Uint64(l.GetNrPages() + n)
		l.CompatNrPages = proto.Uint32(uint32(l.GetNrPages()))
		return nil
	}
	if err := w.flushEntry(); err != nil {
		return err
	}
	w.last = &pagemap.PagemapEntry{Vaddr: proto.Uint64(vaddr), NrPages: proto.Uint64(n),
		CompatNrPages: proto.Uint32(uint32(n)), Flags: proto.Uint32(flags)}
	return nil
}

// flushEntry writes the entry held back, if any.
func (w *destWriter) flushEntry() error {
	if w.last == nil {
		return nil
	}
	e := w.last
	w.last = nil
	return w.pm.Write(e)
}

// copyPages appends size bytes of page contents from the connection to
// the pages image: what in, which reads conn, holds (to the end of that
// page), and a run shorter than spliceMin, through pend; the rest
// through the spliceWriter's pipes where there is one, else read and
// written.
func (w *destWriter) copyPages(in *bufio.Reader, conn io.Reader, size uint64) error {
	w.reserve(size)
	if held := min(uint64(in.Buffered()), size); held > 0 || size < spliceMin {
		n := held
		if size < spliceMin {
			n = size
		}
		if err := w.buffer(in, n); err != nil {
			return err
		}
		// What is spliced starts on a page of the image, as it did
		// before the buffer: the writers write whole pages.
		if tail := (PageSize - n%PageSize) % PageSize; tail > 0 && n < size {
			if err := w.buffer(conn, tail); err != nil {
				return err
			}
			n += tail
		}
		if size -= n; size == 0 {
			return nil
		}
	}
	// in holds nothing: what comes next is in the connection.
	if w.sw != nil {
		n, err := w.sw.copy(w.pages, int64(w.size), size)
		w.size += n
		return err
	}
	// At w.size: pages held in pend are not written yet.
	n, err := io.Copy(io.NewOffsetWriter(w.pages, int64(w.size)), io.LimitReader(in, int64(size)))
	w.size += uint64(n)
	if err != nil {
		return fmt.Errorf("%s: %w", w.pages.Name(), err)
	}
	if uint64(n) != size {
		return fmt.Errorf("the connection closed after %d of the %d bytes of the pages", n, size)
	}
	return nil
}

// buffer reads n bytes of pages from in and appends them to pend,
// written once it is full or the next pages do not follow it.
func (w *destWriter) buffer(in io.Reader, n uint64) error {
	if len(w.pend) > 0 && (w.pendOff+uint64(len(w.pend)) != w.size || uint64(len(w.pend))+n > pendMax) {
		if err := w.flushPend(); err != nil {
			return err
		}
	}
	if len(w.pend) == 0 {
		w.pendOff = w.size
	}
	at := len(w.pend)
	w.pend = slices.Grow(w.pend, int(n))[:at+int(n)]
	if _, err := io.ReadFull(in, w.pend[at:]); err != nil {
		w.pend = w.pend[:at]
		return fmt.Errorf("the connection closed within %d bytes of pages: %w", n, err)
	}
	w.size += n
	return nil
}

// flushPend writes the pages held in pend.
func (w *destWriter) flushPend() error {
	if len(w.pend) == 0 {
		return nil
	}
	_, err := w.pages.WriteAt(w.pend, int64(w.pendOff))
	w.pend = w.pend[:0]
	if err != nil {
		return fmt.Errorf("%s: %w", w.pages.Name(), err)
	}
	return nil
}

// checkHole refuses pages left to the parent images that they do not
// hold: the restore would find nothing there.
func (w *destWriter) checkHole(vaddr, n uint64) error {
	if w.parent == nil {
		return fmt.Errorf("pages left to the parent images, but %v has none here", w.dest)
	}
	end := vaddr + n*PageSize
	for _, r := range w.parent {
		if r.End <= vaddr || r.Start > vaddr {
			continue
		}
		vaddr = r.End
		if vaddr >= end {
			return nil
		}
	}
	return fmt.Errorf("pages at %#x-%#x left to the parent images are not in them", vaddr, end)
}

// close writes the last entry and closes both images, the pages image
// cut to what it holds.
func (w *destWriter) close() error {
	err := errors.Join(w.flushEntry(), w.flushPend())
	if w.sw != nil {
		if werr := w.sw.wait(); err == nil {
			err = werr
		}
	}
	if w.reserved > w.size && w.reserved != ^uint64(0) {
		if terr := w.pages.Truncate(int64(w.size)); terr != nil && err == nil {
			err = terr
		}
	}
	if cerr := w.pm.Close(); err == nil {
		err = cerr
	}
	if cerr := w.pages.Close(); err == nil {
		err = cerr
	}
	return err
}

// hasParent reports whether the parent images hold d's pagemap.
func (s *server) hasParent(d Dest) (bool, error) {
	runs, err := s.parentRuns(d)
	return runs != nil, err
}

// parentRuns are the pages the parent images (the directory's parent
// link) hold for d, or nil if there are none: no parent link, or no
// pagemap of d there.
func (s *server) parentRuns(d Dest) ([]mem.Run, error) {
	path, err := s.dir.ParentPath()
	if err != nil || path == "" {
		return nil, err
	}
	pdir, err := image.OpenDir(path)
	if err != nil {
		return nil, fmt.Errorf("parent images: %w", err)
	}
	defer pdir.Close()
	_, entries, err := mem.ReadPagemap(pdir.File(d.ImageName()))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("parent images: %w", err)
	}
	return append([]mem.Run{}, mem.ParentRuns(entries)...), nil
}
