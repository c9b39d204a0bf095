// Package image reads and writes checkpoint images in CRIU's on-disk format.
//
// An image file is a 4-byte IMG_COMMON magic (IMG_SERVICE for service
// images, nothing for the inventory), the 4-byte magic of its kind, then
// entries: each a little-endian u32 length followed by that many bytes of a
// protobuf message. The message types are go-criu's (crit/images). Pages
// images are raw pages and have no header; see Dir.PagesPath.
//
// The images directory (Dir) is opened once, and every image is opened or
// created relative to it, never through a symbolic link: a dump replaces
// a link planted under an image's name, a restore refuses to read one,
// and a dump first removes the images of an earlier dump (RemoveStale).
// A restore opens the directory with OpenTrustedDir, which refuses a
// directory, a directory above it or an image that a user other than
// root and the caller can write (the policy is in trust.go). The log and
// the pidfile, outside the images or not, are created the same way
// (CreateLog, CreateNew).
package image

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"google.golang.org/protobuf/proto"
)

// MaxEntrySize bounds one protobuf entry. CRIU's largest entries (an mm
// with tens of thousands of VMAs) stay far below it; anything larger is a
// corrupted length field, not data.
const MaxEntrySize = 64 << 20

// ErrBadMagic is returned when a file does not start with the magic its
// kind requires.
var ErrBadMagic = errors.New("wrong magic")

// Writer appends entries of one kind to an image file.
type Writer struct {
	f    *hashingFile
	w    *bufio.Writer
	p    Path
	path string
	buf  []byte
}

// Create creates the image at p (as Path.Create: anew, never through a
// symbolic link) and writes the header for kind.
func Create(p Path, kind Kind) (*Writer, error) {
	f, err := p.Create()
	if err != nil {
		return nil, err
	}
	path := p.String()
	hf := &hashingFile{File: f}
	w := &Writer{f: hf, w: bufio.NewWriterSize(hf, 64<<10), p: p, path: path}
	if _, err := w.w.Write(kind.header()); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: write header: %w", path, err)
	}
	return w, nil
}

// Write appends one entry.
func (w *Writer) Write(m proto.Message) error {
	b, err := appendEntry(w.buf[:0], m)
	if err != nil {
		return fmt.Errorf("%s: %w", w.path, err)
	}
	w.buf = b
	if _, err := w.w.Write(b); err != nil {
		return fmt.Errorf("%s: %w", w.path, err)
	}
	return nil
}

// appendEntry appends m to b as an image holds an entry: its length, 32
// bits little-endian, then its encoding.
func appendEntry(b []byte, m proto.Message) ([]byte, error) {
	at := len(b)
	b = append(b, 0, 0, 0, 0)
	b, err := proto.MarshalOptions{}.MarshalAppend(b, m)
	if err != nil {
		return nil, fmt.Errorf("encode %T: %w", m, err)
	}
	binary.LittleEndian.PutUint32(b[at:], uint32(len(b)-at-4))
	return b, nil
}

// WriteWithPayload appends one entry followed by raw bytes that belong to
// it (pipes-data, sk-queues: the entry says how many).
func (w *Writer) WriteWithPayload(m proto.Message, payload []byte) error {
	if err := w.Write(m); err != nil {
		return err
	}
	if _, err := w.w.Write(payload); err != nil {
		return fmt.Errorf("%s: %w", w.path, err)
	}
	return nil
}

// Close flushes and closes the file, and records its sum with the
// directory for the manifest.
func (w *Writer) Close() error {
	ferr := w.w.Flush()
	cerr := w.f.Close()
	if ferr != nil {
		return fmt.Errorf("%s: %w", w.path, ferr)
	}
	if cerr != nil {
		return fmt.Errorf("%s: %w", w.path, cerr)
	}
	w.p.dir.contents.wrote(w.p.name, w.f.sum)
	return nil
}

// WriteFile writes a whole image of kind with the given entries, encoded
// into one buffer of their size and written at once: most images are a
// few entries, and a dump writes several for every process, for which
// Create's stream buffer would cost more than the image.
func WriteFile(p Path, kind Kind, entries ...proto.Message) error {
	b := kind.header()
	for _, e := range entries {
		var err error
		if b, err = appendEntry(b, e); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
	}
	return p.WriteFile(b)
}

// maxReadBuffer is the read buffer of a large image.
const maxReadBuffer = 64 << 10

// readBufferSize fits the read buffer to a small image, whose reader can
// tell its length: a restore reads several images of a few hundred bytes
// for every process, and a full-size buffer for each costs more than the
// read.
func readBufferSize(r io.Reader) int {
	var n int64 = maxReadBuffer
	switch r := r.(type) {
	case interface{ Len() int }:
		n = int64(r.Len())
	case *os.File:
		if st, err := r.Stat(); err == nil && st.Mode().IsRegular() {
			n = st.Size()
		}
	}
	// bufio's own floor is 16 bytes; one spare byte lets the last read
	// see EOF without a refill.
	return int(min(max(n+1, 16), maxReadBuffer))
}

// Reader reads entries of one kind from an image.
type Reader struct {
	r    *bufio.Reader
	path string
	n    int
}

// NewReader checks the header of kind on r and returns a reader of its
// entries. path is used only in error messages.
func NewReader(r io.Reader, path string, kind Kind) (*Reader, error) {
	br := bufio.NewReaderSize(r, readBufferSize(r))
	want := kind.header()
	got := make([]byte, len(want))
	if _, err := io.ReadFull(br, got); err != nil {
		return nil, fmt.Errorf("%s: read magic: %w", path, noEOF(err))
	}
	if string(got) != string(want) {
		return nil, fmt.Errorf("%s: %w: want %s (%x), got %x", path, ErrBadMagic, kind.Name, want, got)
	}
	return &Reader{r: br, path: path}, nil
}

// Next decodes the next entry into m. It returns io.EOF after the last one.
func (r *Reader) Next(m proto.Message) error {
	return r.NextDecoded(func(b []byte) error {
		if err := proto.Unmarshal(b, m); err != nil {
			return fmt.Errorf("decode %T: %w", m, err)
		}
		return nil
	})
}

// NextDecoded reads the next entry and hands its encoded bytes to decode,
// for entries worth decoding by hand. It returns io.EOF after the last
// entry.
func (r *Reader) NextDecoded(decode func([]byte) error) error {
	var l [4]byte
	if _, err := io.ReadFull(r.r, l[:]); err != nil {
		if err == io.EOF {
			return io.EOF
		}
		return fmt.Errorf("%s: entry %d: truncated length: %w", r.path, r.n, noEOF(err))
	}
	size := binary.LittleEndian.Uint32(l[:])
	if size > MaxEntrySize {
		return fmt.Errorf("%s: entry %d: length %d exceeds %d: corrupted image", r.path, r.n, size, MaxEntrySize)
	}
	b, err := readN(r.r, int(size))
	if err != nil {
		return fmt.Errorf("%s: entry %d: truncated (%d bytes announced): %w", r.path, r.n, size, noEOF(err))
	}
	if err := decode(b); err != nil {
		return fmt.Errorf("%s: entry %d: %w", r.path, r.n, err)
	}
	r.n++
	return nil
}

// NextWithPayload decodes the next entry into m, then reads the raw bytes
// that follow it; size is called after decoding to learn their length.
func (r *Reader) NextWithPayload(m proto.Message, size func() int) ([]byte, error) {
	if err := r.Next(m); err != nil {
		return nil, err
	}
	n := size()
	if n < 0 || n > MaxEntrySize {
		return nil, fmt.Errorf("%s: entry %d: payload length %d out of range", r.path, r.n-1, n)
	}
	b, err := readN(r.r, n)
	if err != nil {
		return nil, fmt.Errorf("%s: entry %d: truncated payload (%d bytes announced): %w", r.path, r.n-1, n, noEOF(err))
	}
	return b, nil
}

// ReadFile reads every entry of the image at p (opened as Path.Open),
// allocating each with newEntry.
func ReadFile[T proto.Message](p Path, kind Kind, newEntry func() T) ([]T, error) {
	f, err := p.OpenContents()
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r, err := NewReader(f, p.String(), kind)
	if err != nil {
		return nil, err
	}
	var out []T
	for {
		e := newEntry()
		err := r.Next(e)
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
}

// EachEntry reads the image at p entry by entry with next, which
// returns io.EOF after the last one. A missing image has no entries: the
// images a dump writes only when it has something to put in them.
func EachEntry(p Path, kind Kind, next func(r *Reader) error) error {
	f, err := p.OpenContents()
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	r, err := NewReader(f, p.String(), kind)
	if err != nil {
		return err
	}
	for {
		if err := next(r); err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
	}
}

// ReadOne reads an image that must hold exactly one entry.
func ReadOne[T proto.Message](p Path, kind Kind, newEntry func() T) (T, error) {
	var zero T
	all, err := ReadFile(p, kind, newEntry)
	if err != nil {
		return zero, err
	}
	if len(all) != 1 {
		return zero, fmt.Errorf("%s: want 1 entry, found %d", p, len(all))
	}
	return all[0], nil
}

// readN reads n bytes, growing the buffer as data arrives so that a
// corrupted length does not make amber allocate it up front.
func readN(r io.Reader, n int) ([]byte, error) {
	const step = 1 << 20
	if n <= step {
		b := make([]byte, n)
		_, err := io.ReadFull(r, b)
		return b, err
	}
	var buf bytes.Buffer
	if _, err := io.CopyN(&buf, r, int64(n)); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Rest reads the raw bytes after the entries read so far, to the end of
// the file: the contents of a small ghost file follow its one entry.
func (r *Reader) Rest() ([]byte, error) {
	b, err := io.ReadAll(r.r)
	if err != nil {
		return nil, fmt.Errorf("%s: after entry %d: %w", r.path, r.n, err)
	}
	return b, nil
}
