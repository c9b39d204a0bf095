package test

// Remote lazy restore: amber dump --lazy-pages leaves the pages of
// private anonymous memory out of the images and serves them from the
// frozen tree; amber lazy-pages --page-server brings them in on fault
// and in the background. The program runs as the init of a pid
// namespace of its own, so that the frozen source and the restored copy
// live side by side on one machine, as they would on two.

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"amber/internal/image"
	"amber/internal/mem"
)

// remoteLazy is a dump --lazy-pages of a case, serving its pages.
type remoteLazy struct {
	c      *zcase
	dump   *bgAmber
	port   int
	srcPid int   // the source program, frozen
	tree   []int // its descendants
}

// startRemoteLazy starts the named program (lazyMiB of memory) in a pid
// namespace of its own and dumps it with --lazy-pages: the dump writes
// its images, then serves the lazy pages on a loopback port.
func startRemoteLazy(t *testing.T, name string) *remoteLazy {
	t.Setenv("LAZY_MIB", lazyMiB)
	c := startNamespaced(t, name, unix.CLONE_NEWPID)
	s := &remoteLazy{c: c, port: freePort(t), srcPid: c.pid, tree: descendants(c.pid)}
	args := c.dumpArgs("--lazy-pages", "--address", "127.0.0.1", "--port", strconv.Itoa(s.port))
	s.dump = c.startReady("dump.log", args...)
	return s
}

// startDaemon starts lazy-pages fetching from the dump.
func (s *remoteLazy) startDaemon() *bgAmber {
	return s.c.startLazyDaemon("--page-server", "--address", "127.0.0.1", "--port", strconv.Itoa(s.port))
}

// restore makes go.now, on which the program checks all its memory as
// soon as it runs, and restores it lazily: c.pid is the restored copy
// from then on.
func (s *remoteLazy) restore() {
	c := s.c
	c.t.Helper()
	if err := os.WriteFile(filepath.Join(c.dir, "go.now"), nil, 0o644); err != nil {
		c.t.Fatal(err)
	}
	pidfile := c.pidfile()
	if r := c.amber(c.prog, c.restoreArgs(pidfile, "-d", "--lazy-pages")...); r.err != nil {
		c.t.Fatalf("restore failed: %v", r)
	}
	pid, err := readPidfile(pidfile)
	if err != nil {
		c.t.Fatal(err)
	}
	if pid == s.srcPid {
		c.t.Fatalf("restored as pid %d, the source's own", pid)
	}
	c.pid = pid
}

// requireLazyImages requires that the images hold none of the program's
// big memory: at least min bytes are PE_LAZY entries, and the pages
// images are smaller than that.
func (s *remoteLazy) requireLazyImages(min uint64) {
	c := s.c
	c.t.Helper()
	dir, err := image.OpenDir(c.images)
	if err != nil {
		c.t.Fatal(err)
	}
	defer dir.Close()
	_, entries, err := mem.ReadPagemap(dir.PagemapPath(c.imagePid()))
	if err != nil {
		c.t.Fatal(err)
	}
	var lazy uint64
	for _, e := range entries {
		if e.GetFlags() == mem.PELazy {
			lazy += mem.NrPages(e) * 4096
		}
	}
	pages, err := filepath.Glob(filepath.Join(c.images, "pages-*.img"))
	if err != nil {
		c.t.Fatal(err)
	}
	var stored int64
	for _, p := range pages {
		if st, err := os.Stat(p); err == nil {
			stored += st.Size()
		}
	}
	if lazy < min || uint64(stored) >= min {
		c.t.Fatalf("images: %d bytes left lazy, %d in pages images; want at least %d lazy, fewer stored", lazy, stored, min)
	}
	c.t.Logf("images: %d bytes left lazy, %d in pages images", lazy, stored)
}

// lazyMiBBytes is lazyMiB in bytes.
func lazyMiBBytes(t *testing.T) uint64 {
	n, err := strconv.Atoi(lazyMiB)
	if err != nil {
		t.Fatal(err)
	}
	return uint64(n) << 20
}

// TestLazyRemote restores lazy_mem lazily from a dump --lazy-pages: its
// memory is in no image; the restored program moves, unmaps and drops
// some of it and reads all of it from four threads while the daemon
// fetches it from the frozen source. The source is killed once the
// daemon had every page, and the dump succeeds.
func TestLazyRemote(t *testing.T) {
	s := startRemoteLazy(t, "lazy_mem")
	c := s.c
	s.requireLazyImages(lazyMiBBytes(t))
	d := s.startDaemon()
	s.restore()
	log := d.mustExit()
	dumpLog := s.dump.mustExit()
	// The source: killed once the daemon ended the session.
	c.pid = s.srcPid
	c.reapDumped(s.tree)
	c.pid = mustReadPidfile(t, filepath.Join(c.dir, "pid"))
	c.mustPass()
	served := regexp.MustCompile(`Lazy pages: (\d+) bytes in (\d+) requests`).FindStringSubmatch(dumpLog)
	if served == nil {
		t.Fatalf("the dump logged no lazy pages served:\n%s", dumpLog)
	}
	if n, _ := strconv.ParseUint(served[1], 10, 64); n < lazyMiBBytes(t)/2 {
		t.Errorf("the dump served %s bytes; want most of %d", served[1], lazyMiBBytes(t))
	}
	t.Logf("dump: %s; lazy-pages: %s", served[0], lastLine(log, "all in after"))
}

// TestLazyRemoteFork restores lazy_fork lazily from a dump --lazy-pages:
// it forks as soon as it runs, its child forks too, and the daemon
// fetches the pages each of the three misses from the one frozen
// source process they all come from.
func TestLazyRemoteFork(t *testing.T) {
	s := startRemoteLazy(t, "lazy_fork")
	s.requireLazyImages(lazyMiBBytes(t))
	s.mustRestoreAll()
}

// mustRestoreAll restores the program lazily from its source, requires
// that the daemon and the dump end by themselves once every page is in,
// reaps the source's tree, and lets the restored program check itself;
// it returns the daemon's log.
func (s *remoteLazy) mustRestoreAll() string {
	c := s.c
	c.t.Helper()
	d := s.startDaemon()
	s.restore()
	log := d.mustExit()
	s.dump.mustExit()
	restored := c.pid
	c.pid = s.srcPid
	c.reapDumped(s.tree)
	c.pid = restored
	c.mustPass()
	return log
}

// TestLazyRemoteSourceKilled kills the source amber once it served half
// the lazy pages: the frozen source runs on (and passes), the daemon
// fails naming the source, and the restored copy, which reads all its
// memory, dies of SIGBUS on a page that never came (poisoned) instead
// of reading zeroes or waiting forever.
func TestLazyRemoteSourceKilled(t *testing.T) {
	t.Setenv(faultEnv, "lazy-half")
	s := startRemoteLazy(t, "lazy_mem")
	c := s.c
	d := s.startDaemon()
	s.restore()
	log, err := d.wait()
	if err == nil || !strings.Contains(log, "poisoned") {
		t.Fatalf("lazy-pages: %v, want a failure that poisons the missing pages; log:\n%s", err, log)
	}
	t.Logf("lazy-pages: %s", lastLine(log, "never came in"))
	if _, err := s.dump.wait(); err == nil {
		t.Fatal("the dump succeeded after it was killed")
	}
	ws, err := waitPid(c.pid, exitTimeout)
	if err != nil {
		killAndReap(c.pid)
		t.Fatalf("the restored copy: %v", err)
	}
	if !ws.Signaled() || ws.Signal() != unix.SIGBUS {
		t.Fatalf("the restored copy: %s, want killed by SIGBUS; it wrote:\n%s", describeStatus(ws), c.output())
	}
	// The source, released when its amber died, checks its memory too.
	c.pid = s.srcPid
	c.mustPass()
}

// TestLazyRemoteSourceStalls stops the source amber (SIGSTOP) before the
// restore: the daemon's first fetch gets no answer, fails after
// --timeout instead of leaving a fault waiting forever, and poisons what
// is missing. A page the restore itself needs (the kernel writes a
// thread's rseq area as it registers it) then fails the restore, which
// leaves no copy behind; a restore that needed none leaves a copy that
// dies of SIGBUS. Once the stopped amber is killed, the source runs on
// and passes.
func TestLazyRemoteSourceStalls(t *testing.T) {
	s := startRemoteLazy(t, "lazy_mem")
	c := s.c
	d := s.c.startLazyDaemon("--page-server", "--address", "127.0.0.1", "--port", strconv.Itoa(s.port), "--timeout", "2")
	if err := s.dump.cmd.Process.Signal(unix.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c.dir, "go.now"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	pidfile := c.pidfile()
	r := c.amber(c.prog, c.restoreArgs(pidfile, "-d", "--lazy-pages")...)
	log, err := d.wait()
	if err == nil || !strings.Contains(log, "no progress in 2s") || !strings.Contains(log, "poisoned") {
		t.Fatalf("lazy-pages: %v, want a failure after --timeout that poisons the missing pages; log:\n%s", err, log)
	}
	if r.err != nil {
		t.Logf("the restore failed: %s", strings.TrimSpace(r.stderr))
		c.requireLive(s.srcPid)
	} else {
		pid := mustReadPidfile(t, pidfile)
		ws, err := waitPid(pid, exitTimeout)
		if err != nil {
			killAndReap(pid)
			t.Fatalf("the restored copy: %v", err)
		}
		if !ws.Signaled() || ws.Signal() != unix.SIGBUS {
			t.Fatalf("the restored copy: %s, want killed by SIGBUS; it wrote:\n%s", describeStatus(ws), c.output())
		}
	}
	s.dump.stop()
	c.mustPass()
}

// TestLazyRemoteDaemonGone: a daemon that goes away before it had every
// page fails the dump, which lets the source run on.
func TestLazyRemoteDaemonGone(t *testing.T) {
	s := startRemoteLazy(t, "lazy_mem")
	c := s.c
	d := s.startDaemon()
	d.stop()
	log, err := s.dump.wait()
	if err == nil || !strings.Contains(log, "before it ended the session") {
		t.Fatalf("dump: %v, want a failure naming the daemon's early close; log:\n%s", err, log)
	}
	c.mustPass()
}

// TestCriuLazyPagesFromAmber: CRIU's lazy-pages daemon and restore take
// the lazy pages of lazy_mem from amber's dump --lazy-pages (CRIU's own
// dump --lazy-pages fails here serving them with this kernel's default
// pipe-max-size, so the other direction is not tested).
func TestCriuLazyPagesFromAmber(t *testing.T) {
	bin := criuBin(t)
	s := startRemoteLazy(t, "lazy_mem")
	c := s.c
	d := c.startReadyBin(bin, "lazy.log", "lazy-pages", "-D", c.images,
		"--page-server", "--address", "127.0.0.1", "--port", strconv.Itoa(s.port))
	if err := os.WriteFile(filepath.Join(c.dir, "go.now"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	pidfile := c.pidfile()
	if r := c.criu(bin, c.restoreArgs(pidfile, "-d", "--lazy-pages")...); r.err != nil {
		t.Fatalf("criu restore failed: %v", criuLog(r, c.images))
	}
	d.mustExit()
	dumpLog := s.dump.mustExit()
	c.pid = s.srcPid
	c.reapDumped(s.tree)
	c.pid = mustReadPidfile(t, pidfile)
	c.mustPass()
	t.Logf("dump: %s", lastLine(dumpLog, "Lazy pages:"))
}

func mustReadPidfile(t *testing.T, path string) int {
	t.Helper()
	pid, err := readPidfile(path)
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// lastLine is the last line of log holding what, "" if none.
func lastLine(log, what string) string {
	lines := strings.Split(log, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], what) {
			return lines[i]
		}
	}
	return ""
}

// TestLazyRemotePageServer is CRIU's lazy migration with pre-copy:
// predump_writer (the init of a pid namespace) is pre-dumped to a page
// server, then dumped on top with --lazy-pages --page-server to a
// second one. The dump sends that server its pagemap, which leaves the
// cold memory to the pre-dump's images and marks the hot pages written
// since lazy, then, once that session ended, serves the lazy pages from
// the frozen source on the page server's address and port. lazy-pages
// fetches them, the restore reads the rest from the chain, and the
// restored copy checks every page; the source is killed once the daemon
// had every page.
func TestLazyRemotePageServer(t *testing.T) {
	lazyPageServerChain(t, testEnv.amber, testEnv.amber)
}

// TestAmberLazyDumpToCriu is TestLazyRemotePageServer with CRIU's page
// servers, then with CRIU's page servers, lazy-pages and restore: the
// destination is CRIU's, the source amber's.
func TestAmberLazyDumpToCriu(t *testing.T) {
	bin := criuBin(t)
	t.Run("page servers", func(t *testing.T) { lazyPageServerChain(t, bin, testEnv.amber) })
	t.Run("destination", func(t *testing.T) { lazyPageServerChain(t, bin, bin) })
}

// lazyPageServerChain migrates predump_writer as TestLazyRemotePageServer
// does, with the page servers of server and the lazy-pages daemon and
// restore of dest (amber or CRIU).
func lazyPageServerChain(t *testing.T, server, dest string) {
	c := startNamespaced(t, "predump_writer", unix.CLONE_NEWPID)
	src, tree := c.pid, descendants(c.pid)
	s := c.startPageServer(server, "pre1")
	c.mustPreDump("pre1", "", s.args()...)
	s.mustExit()
	s = c.startPageServer(server, "images", "--prev-images-dir", "../pre1")
	dump := c.startReady("dump.log", c.dumpArgs(append([]string{"--prev-images-dir", "../pre1", "--track-mem", "--lazy-pages"}, s.args()...)...)...)
	s.mustExit()
	lazy, inParent := c.lazyCounts("images")
	if lazy == 0 || lazy > hotPages+otherPages || inParent < coldPages {
		t.Fatalf("images: %d pages lazy, %d left to the pre-dump; want at most %d lazy (the pages written since) and at least %d (the cold ones) left",
			lazy, inParent, hotPages+otherPages, coldPages)
	}
	d := c.startReadyBin(dest, "lazy.log", "lazy-pages", "-D", c.images,
		"--page-server", "--address", "127.0.0.1", "--port", strconv.Itoa(s.port))
	pidfile := c.pidfile()
	if dest == testEnv.amber {
		if r := c.amber(c.prog, c.restoreArgs(pidfile, "-d", "--lazy-pages")...); r.err != nil {
			t.Fatalf("restore failed: %v", r)
		}
	} else if r := c.criu(dest, c.restoreArgs(pidfile, "-d", "--lazy-pages")...); r.err != nil {
		t.Fatalf("criu restore failed: %v", criuLog(r, c.images))
	}
	restored := mustReadPidfile(t, pidfile)
	if restored == src {
		t.Fatalf("restored as pid %d, the source's own", restored)
	}
	d.mustExit()
	dumpLog := dump.mustExit()
	served := regexp.MustCompile(`Lazy pages: (\d+) bytes in (\d+) requests`).FindStringSubmatch(dumpLog)
	if served == nil {
		t.Fatalf("the dump logged no lazy pages served:\n%s", dumpLog)
	}
	t.Logf("images: %d pages lazy, %d left to the pre-dump; dump: %s", lazy, inParent, served[0])
	c.reapDumped(tree)
	c.pid = restored
	c.mustPass()
}

// lazyCounts counts the pages of the program's pagemap in dir that a
// dump --lazy-pages left at the source (lazy, not present) and those
// it left to the parent images.
func (c *zcase) lazyCounts(dir string) (lazy, inParent uint64) {
	c.t.Helper()
	d, err := image.OpenDir(filepath.Join(c.dir, dir))
	if err != nil {
		c.t.Fatal(err)
	}
	defer d.Close()
	_, entries, err := mem.ReadPagemap(d.PagemapPath(c.imagePid()))
	if err != nil {
		c.t.Fatal(err)
	}
	for _, e := range entries {
		switch {
		case e.GetFlags()&mem.PEParent != 0:
			inParent += mem.NrPages(e)
		case e.GetFlags()&mem.PELazy != 0 && e.GetFlags()&mem.PEPresent == 0:
			lazy += mem.NrPages(e)
		}
	}
	return lazy, inParent
}
