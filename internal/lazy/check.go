package lazy

// The pages images' pieces are checked before any page of them is
// placed in a process. The dump recorded the CRC32C of every piece of
// image.PieceSize bytes (amber's manifest), and a lazy restore checks
// only the pieces it reads itself: the rest the daemon checks, a
// verifier going through them ahead of the background copy, and a
// fault or copy reaching a piece not checked yet checking it first
// (images.ready). A piece that does not match ends the daemon: the tree
// is killed, since it cannot be given its memory (corrupt).

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
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
	// mem maps the image: a piece is hashed in the page cache, where
	// reading it into a buffer first cost as much as the hash (nil: the
	// mapping failed, pieces are read into bufs).
	mem  []byte
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
	c := &imageCheck{fd: fd, size: size, sums: sums, pieces: make([]pieceCheck, len(sums)), bufs: bufs}
	if size > 0 {
		c.mem, _ = unix.Mmap(fd, 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
	}
	return c, nil
}

// close unmaps the image.
func (c *imageCheck) close() {
	if c != nil && c.mem != nil {
		unix.Munmap(c.mem)
	}
}

// ready returns once every piece of [off, off+n) is checked: nil, or
// the CorruptError of a piece that does not match.
func (c *imageCheck) ready(off, n uint64) error {
	if c == nil || n == 0 {
		return nil
	}
	for k := off / image.PieceSize; k <= (off+n-1)/image.PieceSize && k < uint64(len(c.pieces)); k++ {
		if err := c.piece(int(k)); err != nil {
			return err
		}
	}
	return nil
}

// piece checks piece k, once.
func (c *imageCheck) piece(k int) error {
	p := &c.pieces[k]
	p.once.Do(func() { p.err = c.verify(k) })
	return p.err
}

// verify hashes piece k and compares its CRC32C with the dump's.
func (c *imageCheck) verify(k int) error {
	off := uint64(k) * image.PieceSize
	n := min(image.PieceSize, c.size-off)
	got, err := c.hashMapped(off, n)
	if err != nil {
		got, err = c.hashRead(off, n)
	}
	if err != nil {
		return fmt.Errorf("check %s: %w", fdPath(c.fd), err)
	}
	if got != c.sums[k] {
		return &CorruptError{Image: fdPath(c.fd), Off: off, Size: n, Got: got, Want: c.sums[k]}
	}
	return nil
}

// hashMapped hashes n bytes at off in the mapping of the image, its
// pages mapped in one call first rather than faulted one by one. A
// fault (the file cut short since) is an error, not a crash.
func (c *imageCheck) hashMapped(off, n uint64) (crc uint32, err error) {
	if c.mem == nil {
		return 0, errors.New("not mapped")
	}
	b := c.mem[off : off+n]
	if err := unix.Madvise(b, unix.MADV_POPULATE_READ); err != nil {
		return 0, fmt.Errorf("madvise at %#x: %w", off, err)
	}
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("read at %#x: %v", off, p)
		}
	}()
	return image.Checksum(b), nil
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

// ready returns once the bytes [off, off+n) of image img are checked
// (img -1, pages from the source's page server, has no image to check).
func (im *images) ready(img int, off, n uint64) error {
	if img < 0 || img >= len(im.checks) {
		return nil
	}
	return im.checks[img].ready(off, n)
}

// checking tells whether any image of im has pieces to check.
func (im *images) checking() bool {
	for _, c := range im.checks {
		if c != nil {
			return true
		}
	}
	return false
}

// verifyAhead checks every piece of im's images in order, ahead of the
// background copy, which then finds them checked, until done or a piece
// does not match (reported to corrupt).
func (im *images) verifyAhead(done <-chan struct{}, corrupt func(error)) {
	for _, c := range im.checks {
		if c == nil {
			continue
		}
		for k := range c.pieces {
			select {
			case <-done:
				return
			default:
			}
			if err := c.piece(k); err != nil {
				corrupt(err)
				return
			}
		}
	}
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
	d.once.Do(func() { close(d.done) })
}
