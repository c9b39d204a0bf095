package lazy

// The lazy-pages daemon: one event loop reads every userfaultfd's
// messages and answers faults; a goroutine per CPU (up to
// maxPrefetchWorkers) copies the rest, a chunk at a time each. Every
// copy into a process holds its layout lock shared (the loop's answers
// to faults and the background copies side by side), and the event loop
// reads its messages holding it alone: a copy never lands in memory that
// an event already read said was dropped or moved. (Faults answered
// holding the lock alone left a process that touches all its memory at
// once to the loop's one CPU: 1 GiB in 648-673 ms, 544-553 since.) A
// background copy takes the first missing chunk no other one has, reads
// it without the lock (pages images with pread, as CRIU's daemon does,
// into a buffer used again and again: copying from a mapping of the
// images faulted on every page of it, and that cost more than the
// copies), then brings in what of it is still missing, wherever the
// process moved it meanwhile.
// UFFDIO_COPY into one process runs side by side on several CPUs (the
// kernel takes the VMA's lock shared): two threads brought 1 GiB in from
// the page cache in 180-212 ms where one took 320-345, at the same CPU
// time. (Two goroutines, one reading while the other copied holding the
// process's only lock, took longer than one: 295-355 ms against 253-267.)

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"amber/internal/image"
	"amber/internal/log"
	"amber/internal/uffd"
)

const (
	// faultChunk is how much a fault brings in from the faulting page
	// on: a task touching its memory in order faults less.
	faultChunk = 64 << 10
	// prefetchChunk is how much the background copy reads at once (from
	// the images, or from the source's page server: fewer round trips)
	// and then copies in holding the process's lock, so that a fault
	// waits at most for one such copy. CRIU's daemon copies 1 MiB too.
	prefetchChunk = 1 << 20
	// prefetchNice is the background copy's nice value.
	prefetchNice = 10
	// maxPrefetchWorkers bounds the background copies side by side,
	// as the dump's copy workers are bounded.
	maxPrefetchWorkers = 4
)

// Options tell the daemon where it serves from.
type Options struct {
	// Dir is the images directory, where the socket is.
	Dir string
	// Fetch, if set, brings pages that the images do not hold (piece
	// img -1) from the source's page server: it reads size bytes of
	// pid's memory at the dump address addr into buf.
	Fetch func(pid int, addr uint64, buf []byte) error
	// Ready, if set, is called once the socket listens.
	Ready func() error
	Log   *log.Logger
}

// Stats tell what the daemon did.
type Stats struct {
	Procs      int           // processes served, forked ones included
	Faulted    uint64        // bytes brought in on faults
	Prefetched uint64        // bytes brought in in the background
	AllIn      time.Duration // from the first process handed over to the last page in
	// Lost counts the bytes that never came in because the source
	// failed: poisoned, or, where the kernel cannot poison, left to
	// read as zeroes.
	Lost uint64
	// Unplaced is a damaged piece of a pages image that no process got
	// a byte of (it dropped those pages before they were needed): the
	// processes have their memory, the images are damaged all the same.
	Unplaced error
}

// SourceError is the failure of Options.Fetch: the source's page server
// is gone or broken, and no page that only it has can come in any more.
type SourceError struct{ Err error }

func (e *SourceError) Error() string { return "the source's page server: " + e.Err.Error() }
func (e *SourceError) Unwrap() error { return e.Err }

// daemon is one run of the daemon.
type daemon struct {
	opts  Options
	epfd  int
	mu    sync.Mutex
	tasks map[uint64]*task // by epoll id
	next  uint64
	// connDone: the restore closed its socket, no process comes any more.
	connDone bool
	start    time.Time
	stats    Stats
	// done is closed when the daemon is done (stop); wake, an eventfd
	// in the loop's epoll set, then wakes the loop at once.
	done chan struct{}
	wake int
	once sync.Once
	// err ends the daemon: the source failed.
	err error
	// imgs are every process's images, closed at the end.
	imgs []*images
	// pidfds are the processes handed over, killed if a pages image
	// turns out damaged; closed at the end.
	pidfds []int
	// bufs are the buffers pages from the source land in: a fresh one
	// per fetch would have the garbage collector run through the whole
	// memory moved.
	bufs sync.Pool
	// pieceBufs are the buffers pieces are read into to be checked.
	pieceBufs sync.Pool
}

// task is one process's memory: its userfaultfd and missing pages.
type task struct {
	d    *daemon
	id   uint64
	pid  int // in the images: the page server knows it by it
	uffd int
	imgs *images
	// layout is held to copy into the process: shared by the background
	// copies and the event loop's answers to faults, alone by the loop
	// reading the process's events, and by whatever closes uffd. (A
	// writer waiting keeps new readers out: the loop goes first.)
	layout sync.RWMutex
	// mu guards busy, and what follows it among the holders of the
	// layout lock shared (its holder alone needs not take mu).
	mu sync.Mutex
	// busy are the chunks the background copies bring in now.
	busy    []piece
	missing pieces
	// moved: an mremap moved some of the missing pages since the dump
	// (pieces.holding).
	moved    bool
	closed   bool
	deferred []uint64 // faults to answer again once events are read
}

// images are a process's pages images, open; shared with the processes
// it forks, closed when the daemon ends.
type images struct {
	fds   []int
	sizes []uint64
	// checks check the images' pieces before they are read (nil: an
	// image the restore checked, or without piece sums).
	checks []*imageCheck
}

// read reads len(buf) bytes of image img at off, and returns once the
// pieces they lie in are checked: every read of an image's bytes for a
// process goes through here.
func (im *images) read(img int, off uint64, buf []byte) error {
	if err := preadFull(im.fds[img], buf, off); err != nil {
		return fmt.Errorf("pages image %d: %w", img, err)
	}
	if img < len(im.checks) {
		return im.checks[img].check(off, buf)
	}
	return nil
}

// The loop's epoll IDs of the restore's socket and of the daemon's end;
// processes get 1 on.
const (
	connID = 0
	wakeID = ^uint64(0)
)

// setProcs gives Go's scheduler at least n processors while the daemon
// runs, and returns what puts the previous number back. The copy
// workers and the event loop spend their time in system calls (a 1 MiB
// UFFDIO_COPY takes about 0.4 ms), and the scheduler hands the
// processor of a thread in a system call to another thread as soon as
// none is idle: with one processor per CPU, nearly every copy lost its
// own, some 6,000 thread switches a GiB that preempted the copies. A
// processor for each worker, the loop and one spare keep one idle.
func setProcs(n int) (restore func()) {
	if runtime.GOMAXPROCS(0) >= n {
		return func() {}
	}
	prev := runtime.GOMAXPROCS(n)
	return func() { runtime.GOMAXPROCS(prev) }
}

// prefetchWorkers is how many background copies run side by side: one
// per CPU, up to maxPrefetchWorkers.
func prefetchWorkers() int {
	return min(runtime.NumCPU(), maxPrefetchWorkers)
}

// Serve runs the daemon: it takes one restore's connection on the socket
// in opts.Dir and serves its processes until every page is in and every
// userfaultfd is closed.
func Serve(opts Options) (Stats, error) {
	if opts.Log == nil {
		opts.Log = log.Discard()
	}
	ln, path, err := listen(opts.Dir)
	if err != nil {
		return Stats{}, err
	}
	defer os.Remove(path)
	defer unix.Close(ln)
	if opts.Ready != nil {
		if err := opts.Ready(); err != nil {
			return Stats{}, err
		}
	}
	conn, _, err := unix.Accept4(ln, unix.SOCK_CLOEXEC)
	if err != nil {
		return Stats{}, fmt.Errorf("lazy-pages: accept on %s: %w", path, err)
	}
	defer unix.Close(conn)
	unix.Close(ln)
	os.Remove(path)
	d := &daemon{opts: opts, tasks: map[uint64]*task{}, next: 1, done: make(chan struct{}), wake: -1}
	defer setProcs(prefetchWorkers() + 2)()
	d.bufs.New = func() any { b := make([]byte, max(faultChunk, prefetchChunk)); return &b }
	d.pieceBufs.New = func() any { b := make([]byte, image.PieceSize); return &b }
	if d.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return Stats{}, fmt.Errorf("lazy-pages: %w", err)
	}
	defer unix.Close(d.epfd)
	if d.wake, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		return Stats{}, fmt.Errorf("lazy-pages: eventfd: %w", err)
	}
	defer unix.Close(d.wake)
	if err := d.watch(conn, connID); err != nil {
		return Stats{}, err
	}
	if err := d.watch(d.wake, wakeID); err != nil {
		return Stats{}, err
	}
	err = d.loop(conn)
	d.finish()
	if err == nil && d.failure() == nil {
		d.stats.Unplaced = d.checkUnread()
	}
	for _, im := range d.imgs {
		closeAll(im.fds)
	}
	closeAll(d.pidfds)
	return d.stats, d.result(err)
}

// listen makes the socket the restore connects to.
func listen(dir string) (fd int, path string, err error) {
	path = filepath.Join(dir, SocketName)
	os.Remove(path)
	if fd, err = unix.Socket(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0); err != nil {
		return -1, "", fmt.Errorf("lazy-pages: socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		unix.Close(fd)
		return -1, "", fmt.Errorf("lazy-pages: bind %s: %w", path, err)
	}
	if err := unix.Listen(fd, 1); err != nil {
		unix.Close(fd)
		return -1, "", fmt.Errorf("lazy-pages: listen on %s: %w", path, err)
	}
	return fd, path, nil
}

func (d *daemon) watch(fd int, id uint64) error {
	ev := unix.EpollEvent{Events: unix.EPOLLIN}
	*(*uint64)(unsafe.Pointer(&ev.Fd)) = id
	if err := unix.EpollCtl(d.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		return fmt.Errorf("lazy-pages: epoll: %w", err)
	}
	return nil
}

// loop reads the restore's socket and the processes' userfaultfds until
// the daemon is done.
func (d *daemon) loop(conn int) error {
	events := make([]unix.EpollEvent, 64)
	buf := make([]byte, 64*uffd.MsgSize)
	for {
		select {
		case <-d.done:
			return nil
		default:
		}
		timeout := 10
		if d.anyDeferred() {
			timeout = 1
		}
		n, err := unix.EpollWait(d.epfd, events, timeout)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("lazy-pages: epoll: %w", err)
		}
		for _, ev := range events[:max(n, 0)] {
			id := *(*uint64)(unsafe.Pointer(&ev.Fd))
			if id == wakeID {
				continue // done: seen at the top
			}
			if id == connID {
				if err := d.receive(conn); err != nil {
					return err
				}
				continue
			}
			if t := d.task(id); t != nil {
				t.handle(buf)
			}
		}
		for _, t := range d.snapshot() {
			if t.hasDeferred() {
				t.handle(buf)
			}
		}
	}
}

func (d *daemon) task(id uint64) *task {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.tasks[id]
}

func (d *daemon) snapshot() []*task {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]*task, 0, len(d.tasks))
	for _, t := range d.tasks {
		out = append(out, t)
	}
	return out
}

func (d *daemon) anyDeferred() bool {
	for _, t := range d.snapshot() {
		if t.hasDeferred() {
			return true
		}
	}
	return false
}

// receive reads one process handed over by the restore, or the end of
// its session.
func (d *daemon) receive(conn int) error {
	hdr := make([]byte, headerSize)
	oob := make([]byte, unix.CmsgSpace(64*4))
	n, oobn, _, _, err := unix.Recvmsg(conn, hdr, oob, unix.MSG_CMSG_CLOEXEC)
	if err != nil {
		return fmt.Errorf("lazy-pages: read the restore's socket: %w", err)
	}
	if n == 0 {
		d.mu.Lock()
		d.connDone = true
		d.mu.Unlock()
		unix.EpollCtl(d.epfd, unix.EPOLL_CTL_DEL, conn, nil)
		// Only now: the restore, which drives its tasks by ptrace round
		// trips, would wait for the CPU the copy takes.
		for range prefetchWorkers() {
			go d.prefetch()
		}
		d.checkDone()
		return nil
	}
	fds, err := parseRights(oob[:oobn])
	if err != nil || n != headerSize || len(fds) < 2 {
		closeAll(fds)
		return fmt.Errorf("lazy-pages: a malformed message from the restore (%d bytes, %d descriptors): %v", n, len(fds), err)
	}
	pid := int(binary.LittleEndian.Uint32(hdr))
	nimg := int(binary.LittleEndian.Uint32(hdr[4:]))
	nranges := binary.LittleEndian.Uint64(hdr[8:])
	nsums := binary.LittleEndian.Uint64(hdr[16:])
	if len(fds) != nimg+2 {
		closeAll(fds)
		return fmt.Errorf("lazy-pages: pid %d: %d descriptors for %d images", pid, len(fds), nimg)
	}
	imgs, err := openImages(fds[2:])
	if err != nil {
		closeAll(fds)
		return fmt.Errorf("lazy-pages: pid %d: %w", pid, err)
	}
	d.mu.Lock()
	d.imgs = append(d.imgs, imgs)
	d.pidfds = append(d.pidfds, fds[1])
	d.mu.Unlock()
	missing, err := readRanges(conn, nranges)
	if err == nil {
		err = d.readChecks(conn, imgs, nsums)
	}
	if err != nil {
		unix.Close(fds[0])
		return fmt.Errorf("lazy-pages: pid %d: %w", pid, err)
	}
	for _, p := range missing {
		if p.img >= len(imgs.fds) || (p.img >= 0 && p.off+p.end-p.start > imgs.sizes[p.img]) ||
			(p.img < 0 && d.opts.Fetch == nil) {
			unix.Close(fds[0])
			return fmt.Errorf("lazy-pages: pid %d: pages %#x-%#x are in no image the daemon has", pid, p.start, p.end)
		}
	}
	d.mu.Lock()
	if d.start.IsZero() {
		d.start = time.Now()
	}
	d.mu.Unlock()
	d.opts.Log.Infof("lazy-pages: pid %d: %d bytes to bring in", pid, missing.bytes())
	return d.add(&task{pid: pid, uffd: fds[0], imgs: imgs, missing: missing})
}

func readRanges(conn int, n uint64) (pieces, error) {
	var out pieces
	buf := make([]byte, rangesPerMsg*rangeSize)
	for uint64(len(out)) < n {
		m, _, _, _, err := unix.Recvmsg(conn, buf, nil, 0)
		if err != nil {
			return nil, fmt.Errorf("read its missing pages: %w", err)
		}
		if m == 0 || m%rangeSize != 0 {
			return nil, fmt.Errorf("read its missing pages: a message of %d bytes", m)
		}
		out = append(out, decodeRanges(buf[:m])...)
	}
	return out, nil
}

func parseRights(oob []byte) ([]int, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, err
	}
	var fds []int
	for _, m := range msgs {
		got, err := unix.ParseUnixRights(&m)
		if err != nil {
			closeAll(fds)
			return nil, err
		}
		fds = append(fds, got...)
	}
	return fds, nil
}

func closeAll(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// openImages takes the pages images the restore sent, with their sizes.
func openImages(fds []int) (*images, error) {
	imgs := &images{fds: fds}
	for i, fd := range fds {
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return nil, fmt.Errorf("pages image %d: %w", i, err)
		}
		imgs.sizes = append(imgs.sizes, uint64(st.Size))
	}
	return imgs, nil
}

// add starts serving t.
func (d *daemon) add(t *task) error {
	d.mu.Lock()
	t.d, t.id = d, d.next
	d.next++
	d.tasks[t.id] = t
	d.stats.Procs++
	d.mu.Unlock()
	if err := d.watch(t.uffd, t.id); err != nil {
		return err
	}
	// A process with nothing missing needs no daemon.
	t.layout.Lock()
	t.closeIfDoneLocked()
	t.layout.Unlock()
	return nil
}

// drop forgets t, whose userfaultfd is closed.
func (d *daemon) drop(t *task) {
	d.mu.Lock()
	delete(d.tasks, t.id)
	d.mu.Unlock()
	d.checkDone()
}

// checkDone ends the daemon once the restore is over and no process is
// left to serve.
func (d *daemon) checkDone() {
	d.mu.Lock()
	done := d.connDone && len(d.tasks) == 0
	if done && !d.start.IsZero() && d.stats.AllIn == 0 {
		d.stats.AllIn = time.Since(d.start)
	}
	d.mu.Unlock()
	if done {
		d.stop()
	}
}

// finish stops the background copy and closes what is left (after an
// error): once the source failed, what is missing is poisoned first.
func (d *daemon) finish() {
	d.stop()
	failure := d.failure()
	corrupt := errors.As(failure, new(*CorruptError))
	for _, t := range d.snapshot() {
		t.layout.Lock()
		switch {
		case corrupt:
			t.poisonMissingLocked()
		case failure != nil:
			t.poisonLocked()
		}
		t.closeLocked()
		t.layout.Unlock()
	}
}

// stop ends the daemon: the loop, the background copies.
func (d *daemon) stop() {
	d.once.Do(func() {
		close(d.done)
		var one [8]byte
		binary.NativeEndian.PutUint64(one[:], 1)
		unix.Write(d.wake, one[:])
	})
}

// fail ends the daemon with err, the source's failure.
func (d *daemon) fail(err error) {
	d.mu.Lock()
	if d.err == nil {
		d.err = err
	}
	d.mu.Unlock()
	d.stop()
}

func (d *daemon) failure() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.err
}

// result is the daemon's error: the loop's, or the source's failure and
// what it cost.
func (d *daemon) result(err error) error {
	if err != nil {
		return err
	}
	failure := d.failure()
	if errors.As(failure, new(*CorruptError)) {
		return fmt.Errorf("lazy-pages: %w: the restored processes are killed", failure)
	}
	if failure != nil {
		return fmt.Errorf("lazy-pages: %w: %d bytes never came in; poisoned, a process touching them gets SIGBUS", failure, d.stats.Lost)
	}
	return nil
}

// prefetch copies missing pages in the background, once the restore is
// over, until the daemon is done; one runs per CPU, up to
// maxPrefetchWorkers.
func (d *daemon) prefetch() {
	// At a lower priority than the event loop on its own thread: a fault
	// wakes the loop, which must not wait for the copy's time slice.
	runtime.LockOSThread()
	unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), prefetchNice)
	bp := d.bufs.Get().(*[]byte)
	defer d.bufs.Put(bp)
	buf := (*bp)[:prefetchChunk]
	for {
		select {
		case <-d.done:
			return
		default:
		}
		progressed := false
		for _, t := range d.snapshot() {
			if t.prefetchOne(buf) {
				progressed = true
			}
		}
		if !progressed {
			time.Sleep(200 * time.Microsecond)
		}
	}
}

// prefetchOne brings in the first chunk of what t misses that no other
// background copy has: it reads it into buf without t's layout lock, so
// that faults and events go on meanwhile, then brings in what of it is
// still missing, holding the lock shared.
func (t *task) prefetchOne(buf []byte) bool {
	p, ok := t.take(uint64(len(buf)))
	if !ok {
		return false
	}
	defer t.give(p)
	buf = buf[:p.end-p.start]
	err := t.readPiece(p, buf)
	var done bool
	if err == nil {
		t.layout.RLock()
		done, err = t.placeShared(p, buf)
		t.layout.RUnlock()
	}
	if err != nil || done {
		t.layout.Lock()
		defer t.layout.Unlock()
		if t.closed {
			return false
		}
		if err != nil {
			t.failLocked(err)
			return false
		}
		t.closeIfDoneLocked()
	}
	return true
}

// take marks the first missing chunk of at most size bytes that no
// other background copy has as busy, and returns it. A chunk ends where
// a piece of its image does: chunks taken one after the other then read
// the image a whole piece at a time, each piece checked by the read that
// brings it in.
func (t *task) take(size uint64) (piece, bool) {
	t.layout.RLock()
	defer t.layout.RUnlock()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return piece{}, false
	}
	p, ok := t.missing.firstFree(t.busy, size)
	if !ok {
		return piece{}, false
	}
	p = p.toImagePieceEnd()
	t.busy = append(t.busy, p)
	return p, true
}

// give drops p, which take returned, from the busy chunks.
func (t *task) give(p piece) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.busy = slices.DeleteFunc(t.busy, func(b piece) bool { return b == p })
}

// readPiece reads p's contents into buf: from its pages image, or from
// the source's page server.
func (t *task) readPiece(p piece, buf []byte) error {
	if p.img >= 0 {
		return t.imgs.read(p.img, p.off, buf)
	}
	if err := t.d.opts.Fetch(t.pid, p.orig, buf); err != nil {
		return &SourceError{err}
	}
	return nil
}

// placeShared brings in the missing pages of p's source that were at
// p.orig on at the dump, whose contents buf holds, wherever they are now
// (read without the lock: faults may have brought some in, events moved
// or dropped some), holding the layout lock shared; p must be busy, so
// that no other background copy brings in the same pages. It tells
// whether nothing is missing any more.
func (t *task) placeShared(p piece, buf []byte) (done bool, err error) {
	t.mu.Lock()
	closed, targets := t.closed, t.missing.holding(p, t.moved)
	t.mu.Unlock()
	if closed {
		return false, nil
	}
	for _, q := range targets {
		copied, err := copyPages(t.uffd, q.start, unsafe.Pointer(&buf[q.orig-p.orig]), q.end-q.start)
		t.d.count(&t.d.stats.Prefetched, copied)
		if errors.Is(err, errChanging) {
			continue // still missing: read again later
		}
		if err != nil {
			return false, err
		}
		t.mu.Lock()
		t.missing, _ = t.missing.remove(q.start, q.end)
		t.mu.Unlock()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.missing) == 0, nil
}

func (d *daemon) count(c *uint64, n uint64) {
	d.mu.Lock()
	*c += n
	d.mu.Unlock()
}

// fill brings p in, a chunk at a time, and drops it from the missing
// pages; its caller holds the layout lock, shared or alone. It returns
// how many bytes it copied (pages a background copy brought in
// meanwhile are not copied again).
func (t *task) fill(p piece) (copied uint64, err error) {
	bp := t.d.bufs.Get().(*[]byte)
	defer t.d.bufs.Put(bp)
	for at := p.start; at < p.end; {
		c := p.cut(at, at+uint64(len(*bp)))
		buf := (*bp)[:c.end-c.start]
		if err := t.readPiece(c, buf); err != nil {
			return copied, err
		}
		n, err := copyPages(t.uffd, c.start, unsafe.Pointer(&buf[0]), uint64(len(buf)))
		copied += n
		if err != nil {
			return copied, err
		}
		t.mu.Lock()
		t.missing, _ = t.missing.remove(c.start, c.end)
		t.mu.Unlock()
		at = c.end
	}
	return copied, nil
}

// failLocked handles a failed copy: a process gone needs nothing more, a
// layout change waits for its event, a failed source ends the daemon
// (every process's missing pages are poisoned); anything else is logged
// and leaves the process to the kernel (it gets zero pages).
func (t *task) failLocked(err error) {
	var se *SourceError
	switch {
	case errors.Is(err, errChanging):
		return
	case errors.As(err, new(*CorruptError)):
		t.d.corrupt(err)
		t.poisonMissingLocked()
	case errors.As(err, &se):
		t.d.opts.Log.Errorf("lazy-pages: pid %d: %v", t.pid, err)
		t.d.fail(err)
		t.poisonLocked()
	case errors.Is(err, errGone):
		t.d.opts.Log.Debugf("lazy-pages: pid %d: gone, %d bytes never needed", t.pid, t.missing.bytes())
	default:
		t.d.opts.Log.Errorf("lazy-pages: pid %d: %v", t.pid, err)
	}
	t.closeLocked()
}

// closeIfDoneLocked closes t's userfaultfd once nothing is missing: the
// kernel then unregisters its memory, and a page dropped later reads as
// zeroes, as without userfaultfd.
func (t *task) closeIfDoneLocked() {
	if len(t.missing) == 0 && len(t.deferred) == 0 {
		t.closeLocked()
	}
}

func (t *task) closeLocked() {
	if t.closed {
		return
	}
	t.closed = true
	unix.Close(t.uffd)
	t.d.drop(t)
}

// poisonLocked marks t's missing pages lost: a thread touching one,
// one waiting on one included, gets SIGBUS instead of memory that is not
// the process's.
func (t *task) poisonLocked() {
	if t.closed || len(t.missing) == 0 {
		return
	}
	// What the images here hold still comes in.
	for _, p := range t.missing {
		if p.img >= 0 {
			if _, err := t.fill(p); err != nil {
				t.d.opts.Log.Errorf("lazy-pages: pid %d: %v", t.pid, err)
			}
		}
	}
	t.poisonMissingLocked()
}

// poisonMissingLocked poisons t's missing pages and counts them lost.
func (t *task) poisonMissingLocked() {
	if t.closed || len(t.missing) == 0 {
		return
	}
	lost := t.missing.bytes()
	t.d.count(&t.d.stats.Lost, lost)
	for _, p := range t.missing {
		err := poison(t.uffd, p.start, p.end)
		if errors.Is(err, errGone) {
			t.d.opts.Log.Debugf("lazy-pages: pid %d: gone", t.pid)
			break
		}
		if err != nil {
			t.d.opts.Log.Errorf("lazy-pages: pid %d: %v: the process reads zeroes where pages are missing", t.pid, err)
			break
		}
	}
	t.d.opts.Log.Errorf("lazy-pages: pid %d: %d bytes poisoned", t.pid, lost)
	t.missing = nil
}

func (t *task) hasDeferred() bool {
	t.layout.RLock()
	defer t.layout.RUnlock()
	t.mu.Lock()
	defer t.mu.Unlock()
	return !t.closed && len(t.deferred) > 0
}

// handle reads t's messages holding its layout lock alone, acting on
// the events among them at once, then answers the faults they hold, and
// those left waiting on a layout change, holding it shared: beside the
// background copies, so that a process touching all its memory at once
// has it brought in on every CPU, not by this loop alone.
func (t *task) handle(buf []byte) {
	faults := t.readMessages(buf)
	if len(faults) == 0 {
		return
	}
	t.layout.RLock()
	var err error
	for _, addr := range faults {
		if err = t.faultShared(addr); err != nil {
			break
		}
	}
	t.mu.Lock()
	more := len(t.missing) > 0 || len(t.deferred) > 0
	t.mu.Unlock()
	t.layout.RUnlock()
	if err == nil && more {
		// Taking the lock alone waits for every background copy: only
		// to end.
		return
	}
	t.layout.Lock()
	defer t.layout.Unlock()
	if t.closed {
		return
	}
	if err != nil {
		t.failLocked(err)
		return
	}
	t.closeIfDoneLocked()
}

// readMessages reads t's messages and acts on its events, holding the
// layout lock alone, and returns the faults to answer: those left
// waiting on a layout change first, then those read, in order.
func (t *task) readMessages(buf []byte) []uint64 {
	t.layout.Lock()
	defer t.layout.Unlock()
	if t.closed {
		return nil
	}
	faults := t.deferred
	t.deferred = nil
	for {
		n, err := unix.Read(t.uffd, buf)
		if err != nil || n <= 0 {
			break
		}
		for b := buf[:n]; len(b) >= uffd.MsgSize && !t.closed; b = b[uffd.MsgSize:] {
			if addr, ok := t.messageLocked(b[:uffd.MsgSize]); ok {
				faults = append(faults, addr)
			}
		}
		if t.closed {
			return nil
		}
	}
	if len(faults) == 0 {
		t.closeIfDoneLocked()
	}
	return faults
}

// messageLocked acts on one uffd_msg; a fault it returns, to be
// answered once every message read is.
func (t *task) messageLocked(m []byte) (fault uint64, ok bool) {
	arg := m[8:]
	u64 := func(i int) uint64 { return binary.LittleEndian.Uint64(arg[8*i:]) }
	switch m[0] {
	case uffd.EventPagefault:
		t.d.opts.Log.Debugf("lazy-pages: pid %d: fault at %#x", t.pid, u64(1))
		return u64(1) &^ (pageSize - 1), true
	case uffd.EventFork:
		t.d.opts.Log.Debugf("lazy-pages: pid %d: fork", t.pid)
		t.forkLocked(int(binary.LittleEndian.Uint32(arg)))
	case uffd.EventRemap:
		t.d.opts.Log.Debugf("lazy-pages: pid %d: %#x bytes moved from %#x to %#x", t.pid, u64(2), u64(0), u64(1))
		t.missing = t.missing.move(u64(0), u64(1), u64(2))
		t.moved = true
	case uffd.EventRemove, uffd.EventUnmap:
		t.d.opts.Log.Debugf("lazy-pages: pid %d: %#x-%#x dropped (event %#x)", t.pid, u64(0), u64(1), m[0])
		t.missing, _ = t.missing.remove(u64(0), u64(1))
	}
	return 0, false
}

// faultShared answers a fault at addr, holding the layout lock shared:
// the pages from there on if they are missing, else the zero page
// (memory the images do not hold or the process dropped). A background
// copy may bring in the same pages meanwhile: the second copy finds them
// there and wakes the faulting thread. A fault refused by a layout
// change waits for the next read of events.
func (t *task) faultShared(addr uint64) error {
	t.mu.Lock()
	i := t.missing.find(addr)
	var p piece
	if i >= 0 {
		p = t.missing[i].cut(addr, addr+faultChunk)
	}
	t.mu.Unlock()
	var err error
	if i < 0 {
		err = zeroPage(t.uffd, addr)
	} else {
		var copied uint64
		copied, err = t.fill(p)
		t.d.count(&t.d.stats.Faulted, copied)
	}
	if errors.Is(err, errChanging) {
		t.mu.Lock()
		t.deferred = append(t.deferred, addr)
		t.mu.Unlock()
		return nil
	}
	return err
}

// forkLocked starts serving the child the process forked, whose
// userfaultfd is uffd: it misses what its parent missed.
func (t *task) forkLocked(uffd int) {
	child := &task{pid: t.pid, uffd: uffd, imgs: t.imgs, missing: append(pieces(nil), t.missing...), moved: t.moved}
	if err := t.d.add(child); err != nil {
		t.d.opts.Log.Errorf("lazy-pages: pid %d: a child it forked: %v", t.pid, err)
	}
}
