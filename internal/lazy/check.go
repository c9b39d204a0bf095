package lazy

// The pages images' pieces are checked before any page of them is
// placed in a process. The dump recorded the CRC32C of every piece of
// image.PieceSize bytes (amber's manifest), and a lazy restore checks
// only the pieces it reads itself: the rest the daemon checks as it
// reads them. A read that holds a whole piece hashes the bytes it read,
// which are then in the cache for the copy that follows: the background
// copy reads a piece at a time, so that checking every page costs one
// hash of bytes already at hand (a verifier reading the images ahead of
// the copy, on a CPU of its own, made the pages come in 1.3x later).
// A read of part of a piece (a fault, a run of pages that starts or ends
// inside one) has the piece read and hashed whole first, once. A piece
// that does not match ends the daemon: the tree is killed, since it
// cannot be given its memory (corrupt). Pieces no read covered, of pages
// the processes dropped before they were needed, are checked once every
// page is in (checkUnread), and one of them damaged is reported, the
// processes left running.

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"amber/internal/image"
	"amber/internal/proc"
)

// CorruptError is a piece of a pages image that does not hash to the
// CRC32C the dump recorded.
type CorruptError struct {
	Image     string // the image's path
	Off, Size uint64 // the piece
	Got, Want uint32
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("%s: the %d bytes at %d: CRC32C %08x, but %s says %08x: damaged since the dump",
		e.Image, e.Size, e.Off, e.Got, image.ManifestName, e.Want)
}

// imageCheck is the check of one pages image, a piece at a time.
type imageCheck struct {
	fd     int
	size   uint64
	sums   []uint32
	pieces []pieceCheck
	// bufs hold the pieces read to be checked on their own.
	bufs *sync.Pool
}

// pieceCheck is the check of one piece: done once, by whoever comes
// first, the others waiting for it.
type pieceCheck struct {
	once sync.Once
	err  error
}

// newImageCheck checks image fd of size bytes against sums, one per
// piece; nil sums: nothing to check (the restore did).
func newImageCheck(fd int, size uint64, sums []uint32, bufs *sync.Pool) (*imageCheck, error) {
	if sums == nil {
		return nil, nil
	}
	if len(sums) != image.PieceCount(int64(size)) {
		return nil, fmt.Errorf("%d piece sums for an image of %d bytes", len(sums), size)
	}
	return &imageCheck{fd: fd, size: size, sums: sums, pieces: make([]pieceCheck, len(sums)), bufs: bufs}, nil
}

// check returns once every piece that buf, the image's bytes at off,
// lies in is checked: nil, or the CorruptError of a piece that does not
// match. A piece buf holds whole is checked by hashing buf.
func (c *imageCheck) check(off uint64, buf []byte) error {
	if c == nil || len(buf) == 0 {
		return nil
	}
	end := off + uint64(len(buf))
	for k := off / image.PieceSize; k <= (end-1)/image.PieceSize && k < uint64(len(c.pieces)); k++ {
		from, to := c.bounds(int(k))
		var err error
		if from >= off && to <= end {
			err = c.piece(int(k), func() (uint32, error) { return image.Checksum(buf[from-off : to-off]), nil })
		} else {
			err = c.piece(int(k), func() (uint32, error) { return c.hashRead(from, to-from) })
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// bounds are the image offsets piece k runs over.
func (c *imageCheck) bounds(k int) (from, to uint64) {
	from = uint64(k) * image.PieceSize
	return from, min(from+image.PieceSize, c.size)
}

// piece checks piece k once, by hash, its CRC32C: whoever comes first
// hashes it, the others wait for and take the result.
func (c *imageCheck) piece(k int, hash func() (uint32, error)) error {
	p := &c.pieces[k]
	p.once.Do(func() { p.err = c.compare(k, hash) })
	return p.err
}

// compare hashes piece k and compares its CRC32C with the dump's.
func (c *imageCheck) compare(k int, hash func() (uint32, error)) error {
	got, err := hash()
	if err != nil {
		return fmt.Errorf("check %s: %w", fdPath(c.fd), err)
	}
	if got != c.sums[k] {
		from, to := c.bounds(k)
		return &CorruptError{Image: fdPath(c.fd), Off: from, Size: to - from, Got: got, Want: c.sums[k]}
	}
	return nil
}

// hashRead hashes n bytes at off, read into a buffer.
func (c *imageCheck) hashRead(off, n uint64) (uint32, error) {
	bp := c.bufs.Get().(*[]byte)
	defer c.bufs.Put(bp)
	buf := (*bp)[:n]
	if err := preadFull(c.fd, buf, off); err != nil {
		return 0, err
	}
	return image.Checksum(buf), nil
}

// all checks every piece not checked yet.
func (c *imageCheck) all() error {
	if c == nil {
		return nil
	}
	for k := range c.pieces {
		from, to := c.bounds(k)
		if err := c.piece(k, func() (uint32, error) { return c.hashRead(from, to-from) }); err != nil {
			return err
		}
	}
	return nil
}

// checkUnread checks, once every page is in, the pieces of the images
// that no read for a process covered: pieces of pages the processes
// dropped before they were needed, or of pages the restore placed. None
// of their bytes went into a process, so a damaged one leaves the
// processes as they are (Stats.Unplaced): what to make of the damage is
// the caller's to say.
func (d *daemon) checkUnread() error {
	for _, im := range d.imgs {
		for _, c := range im.checks {
			if err := c.all(); err != nil {
				d.opts.Log.Errorf("lazy-pages: %v: no page of it was placed", err)
				return err
			}
		}
	}
	return nil
}

// preadFull reads len(buf) bytes of fd at off.
func preadFull(fd int, buf []byte, off uint64) error {
	for done := 0; done < len(buf); {
		n, err := unix.Pread(fd, buf[done:], int64(off)+int64(done))
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read at %#x: %w", off+uint64(done), err)
		}
		if n == 0 {
			return fmt.Errorf("read at %#x: %w", off+uint64(done), io.ErrUnexpectedEOF)
		}
		done += n
	}
	return nil
}

// fdPath is the path of the file open at fd, for messages.
func fdPath(fd int) string {
	p, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd))
	if err != nil {
		return fmt.Sprintf("pages image (descriptor %d)", fd)
	}
	return p
}

// killTree kills the processes of pidfds and all their descendants.
func killTree(pidfds []int) {
	var pids []int
	for _, fd := range pidfds {
		if pid := pidOf(fd); pid > 0 {
			pids = append(pids, descendants(pid)...)
		}
	}
	for _, fd := range pidfds {
		unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
	}
	for _, pid := range pids {
		unix.Kill(pid, unix.SIGKILL)
	}
}

// pidOf is the PID of pidfd (in the daemon's PID namespace), or 0.
func pidOf(pidfd int) int {
	f, err := os.Open(fmt.Sprintf("/proc/self/fdinfo/%d", pidfd))
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "Pid:"); ok {
			pid, _ := strconv.Atoi(strings.TrimSpace(v))
			return pid
		}
	}
	return 0
}

// descendants are the children of pid, theirs, and so on (those whose
// children cannot be read, gone meanwhile, have none).
func descendants(pid int) []int {
	var out []int
	for queue := []int{pid}; len(queue) > 0; queue = queue[1:] {
		kids, _ := proc.Children(queue[0])
		out = append(out, kids...)
		queue = append(queue, kids...)
	}
	return out
}

// readChecks reads the piece sums of imgs' images the restore sends
// after the missing pages (nsums in all) and sets up their checks.
func (d *daemon) readChecks(conn int, imgs *images, nsums uint64) error {
	buf := make([]byte, 4*max(sumsPerMsg, len(imgs.fds)+1))
	n, _, _, _, err := unix.Recvmsg(conn, buf, nil, 0)
	if err != nil {
		return fmt.Errorf("read its piece sums: %w", err)
	}
	if n != 4*(len(imgs.fds)+1) || int(binary.LittleEndian.Uint32(buf)) != len(imgs.fds) {
		return fmt.Errorf("read its piece sums: a message of %d bytes for %d images", n, len(imgs.fds))
	}
	counts := make([]uint64, len(imgs.fds))
	var total uint64
	for i := range counts {
		counts[i] = uint64(binary.LittleEndian.Uint32(buf[4*(i+1):]))
		total += counts[i]
	}
	if total != nsums {
		return fmt.Errorf("read its piece sums: %d counted, %d announced", total, nsums)
	}
	var sums []uint32
	for uint64(len(sums)) < nsums {
		m, _, _, _, err := unix.Recvmsg(conn, buf, nil, 0)
		if err != nil {
			return fmt.Errorf("read its piece sums: %w", err)
		}
		if m == 0 || m%4 != 0 || uint64(len(sums)+m/4) > nsums {
			return fmt.Errorf("read its piece sums: a message of %d bytes", m)
		}
		for b := buf[:m]; len(b) > 0; b = b[4:] {
			sums = append(sums, binary.LittleEndian.Uint32(b))
		}
	}
	for i, fd := range imgs.fds {
		var own []uint32
		if counts[i] > 0 {
			own, sums = sums[:counts[i]:counts[i]], sums[counts[i]:]
		}
		c, err := newImageCheck(fd, imgs.sizes[i], own, &d.pieceBufs)
		if err != nil {
			return fmt.Errorf("%s: %w", fdPath(fd), err)
		}
		imgs.checks = append(imgs.checks, c)
	}
	return nil
}

// corrupt ends the daemon on a damaged pages image: the restored
// processes are killed at once, before any of them can run on with
// memory that is not theirs.
func (d *daemon) corrupt(err error) {
	d.mu.Lock()
	first := d.err == nil
	if first {
		d.err = err
	}
	pidfds := slices.Clone(d.pidfds)
	d.mu.Unlock()
	if !first {
		return
	}
	d.opts.Log.Errorf("lazy-pages: %v: killing the restored processes", err)
	killTree(pidfds)
	d.stop()
}
