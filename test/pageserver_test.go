package test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"amber/internal/image"
	"amber/internal/mem"
	"amber/internal/pageserver"
)

// pageServer is a page server (amber's or CRIU's) run for a test.
type pageServer struct {
	t    *testing.T
	cmd  *exec.Cmd
	port int
	out  *os.File
	done chan error
}

// startPageServer starts bin page-server writing into dir (under the
// case's scratch dir) with extra arguments, on a free loopback port, and
// waits until it listens (--status-fd).
func (c *zcase) startPageServer(bin, dir string, extra ...string) *pageServer {
	c.t.Helper()
	path := filepath.Join(c.dir, dir)
	if err := os.MkdirAll(path, 0o755); err != nil {
		c.t.Fatal(err)
	}
	port := freePort(c.t)
	r, w, err := os.Pipe()
	if err != nil {
		c.t.Fatal(err)
	}
	defer r.Close()
	out, err := unlinkedTemp("page-server-*.log")
	if err != nil {
		c.t.Fatal(err)
	}
	args := append([]string{"page-server", "-D", path, "--address", "127.0.0.1", "--port", strconv.Itoa(port),
		"--status-fd", "3", "-v4"}, extra...)
	cmd := exec.Command(bin, args...)
	cmd.Dir, cmd.Stdout, cmd.Stderr, cmd.ExtraFiles = c.dir, out, out, []*os.File{w}
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	w.Close()
	s := &pageServer{t: c.t, cmd: cmd, port: port, out: out, done: make(chan error, 1)}
	go func() { s.done <- cmd.Wait() }()
	c.t.Cleanup(s.stop)
	var b [1]byte
	if n, err := r.Read(b[:]); n != 1 || b[0] != 0 {
		c.t.Fatalf("page server did not get ready (%v):\n%s", err, readAll(out))
	}
	return s
}

// mustDumpToPageServer dumps the case's program to bin page-server
// writing into dir, and waits for the server to end its session.
func (c *zcase) mustDumpToPageServer(bin, dir string) {
	c.t.Helper()
	s := c.startPageServer(bin, dir)
	c.mustDump(s.args()...)
	s.mustExit()
}

// freePort finds a TCP port free on loopback.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// args are the dump options that send pages to s.
func (s *pageServer) args() []string {
	return []string{"--page-server", "--address", "127.0.0.1", "--port", strconv.Itoa(s.port)}
}

// mustExit requires that the server ends successfully after its session.
func (s *pageServer) mustExit() {
	s.t.Helper()
	select {
	case err := <-s.done:
		s.done <- err
		if err != nil {
			s.t.Fatalf("page server: %v\n%s", err, readAll(s.out))
		}
	case <-time.After(exitTimeout):
		s.t.Fatalf("page server still running after the dump:\n%s", readAll(s.out))
	}
}

// stop kills the server if it still runs.
func (s *pageServer) stop() {
	select {
	case err := <-s.done:
		s.done <- err
	default:
		s.cmd.Process.Kill()
		<-s.done
	}
	if s.t.Failed() {
		s.t.Logf("=== page server:\n%s", readAll(s.out))
	}
	s.out.Close()
}

// requireServerImages requires that the pagemap of the program in dir
// is the page server's: its pages image is numbered from FirstPagesID.
func (c *zcase) requireServerImages(dir string) {
	c.t.Helper()
	d, err := image.OpenDir(filepath.Join(c.dir, dir))
	if err != nil {
		c.t.Fatal(err)
	}
	defer d.Close()
	head, _, err := mem.ReadPagemap(d.PagemapPath(c.pid))
	if err != nil {
		c.t.Fatal(err)
	}
	if id := head.GetPagesId(); id < pageserver.FirstPagesID {
		c.t.Fatalf("%s: pagemap of pid %d names pages-%d.img: not written by the page server", dir, c.pid, id)
	}
}

// TestPageServer dumps predump_writer to amber's page server, which
// writes the pagemap and pages images into the same directory as the
// rest of the dump, kills it and restores it: the program checks every
// page of its memory.
func TestPageServer(t *testing.T) {
	c := startCase(t, "predump_writer")
	c.mustDumpToPageServer(testEnv.amber, "images")
	c.requireServerImages("images")
	c.requireNoManifest()
	c.mustRestoreDetached()
	c.mustPass()
}

// TestPageServerElsewhere: the page server writes into a directory of
// its own; once its images join the dump's, the restore works.
func TestPageServerElsewhere(t *testing.T) {
	c := startCase(t, "predump_writer")
	c.mustDumpToPageServer(testEnv.amber, "received")
	c.requireNoManifest()
	c.requireServerImages("received")
	moveImages(t, filepath.Join(c.dir, "received"), c.images)
	c.mustRestoreDetached()
	c.mustPass()
}

// requireNoManifest requires that the dump wrote no manifest: it
// cannot vouch for the page server's images.
func (c *zcase) requireNoManifest() {
	c.t.Helper()
	if _, err := os.Stat(filepath.Join(c.images, image.ManifestName)); err == nil {
		c.t.Fatalf("a dump to a page server wrote %s", image.ManifestName)
	}
}

// moveImages moves every image of src into dst.
func moveImages(t *testing.T, src, dst string) {
	t.Helper()
	names, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if strings.HasSuffix(n.Name(), ".img") {
			if err := os.Rename(filepath.Join(src, n.Name()), filepath.Join(dst, n.Name())); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestPageServerLayouts dumps lazy_layout's random layouts (regions of
// every size, adjacent and apart, shared, read-only and PROT_NONE ones,
// untouched, zeroed and dropped runs) to amber's page server, kills it
// and restores it: the program checks every page. The dump sends the
// pages through pipes its parasite fills (PROT_NONE ones, which the
// process cannot hand over, copied): its log must say some went so. A
// failure names its seed: AMBER_LAYOUT_SEED=SEED replays it.
func TestPageServerLayouts(t *testing.T) {
	for _, seed := range layoutSeeds(t, 3) {
		t.Run(fmt.Sprintf("%#x", seed), func(t *testing.T) {
			t.Setenv("LAYOUT_SEED", fmt.Sprint(seed))
			c := startCase(t, "lazy_layout")
			c.mustDumpToPageServer(testEnv.amber, "images")
			c.requireServerImages("images")
			c.requireSpliced()
			c.mustRestoreDetached()
			c.mustPass()
		})
	}
}

// TestPageServerFewDescriptors dumps predump_writer with --leave-running
// to amber's page server with its RLIMIT_NOFILE a few descriptors above
// what it holds: room for the parasite and the memory tracking only (the
// pages are copied), for one pipe of the process's more (the pages go
// through it), or for all eight. Each dump leaves the program with the
// descriptors it had, and the program then checks its memory.
func TestPageServerFewDescriptors(t *testing.T) {
	for _, spare := range []int{3, 5, 20} {
		t.Run(fmt.Sprintf("spare=%d", spare), func(t *testing.T) {
			c := startCase(t, "predump_writer")
			before := c.fds()
			var lim unix.Rlimit
			if err := unix.Prlimit(c.pid, unix.RLIMIT_NOFILE, nil, &lim); err != nil {
				t.Fatal(err)
			}
			lim.Cur = uint64(maxFd(t, before) + 1 + spare)
			if err := unix.Prlimit(c.pid, unix.RLIMIT_NOFILE, &lim, nil); err != nil {
				t.Fatal(err)
			}
			s := c.startPageServer(testEnv.amber, "received")
			if r := c.dump(append(s.args(), "--leave-running")...); r.err != nil {
				t.Fatalf("dump failed: %v", r)
			}
			s.mustExit()
			if after := c.fds(); !slices.Equal(after, before) {
				t.Fatalf("descriptors %v after the dump, %v before", after, before)
			}
			if n := c.splicedPages(); (n > 0) != (spare > 3) {
				t.Fatalf("%d pages spliced with %d descriptors to spare", n, spare)
			}
			c.mustPass()
		})
	}
}

// fds lists the program's descriptors and what they are.
func (c *zcase) fds() []string {
	c.t.Helper()
	names, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", c.pid))
	if err != nil {
		c.t.Fatal(err)
	}
	var out []string
	for _, n := range names {
		link, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", c.pid, n.Name()))
		out = append(out, n.Name()+" "+link)
	}
	return out
}

// maxFd is the highest descriptor of fds (as zcase.fds lists them).
func maxFd(t *testing.T, fds []string) int {
	high := -1
	for _, f := range fds {
		n, err := strconv.Atoi(strings.Fields(f)[0])
		if err != nil {
			t.Fatal(err)
		}
		high = max(high, n)
	}
	return high
}

// requireSpliced requires that the last dump sent pages of the program
// spliced from it.
func (c *zcase) requireSpliced() {
	c.t.Helper()
	if c.splicedPages() == 0 {
		c.t.Fatalf("the dump spliced no pages of pid %d", c.pid)
	}
}

// splicedPages is how many pages of the program the last dump sent
// spliced from it, as its log says.
func (c *zcase) splicedPages() int {
	c.t.Helper()
	b, err := os.ReadFile(filepath.Join(c.images, "dump.log"))
	if err != nil {
		c.t.Fatal(err)
	}
	log := string(b)
	m := regexp.MustCompile(fmt.Sprintf(`pid %d: (\d+) of the pages sent spliced`, c.pid)).FindStringSubmatch(log)
	if m == nil {
		c.t.Fatalf("the dump log does not say how many pages of pid %d it spliced:\n%s", c.pid, log)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// TestPageServerTree dumps process trees with shared memory to amber's
// page server: each process's private pages go to the server, while
// the shared memory objects' pages stay with the dump's other images
// (pages images numbered apart from the server's); the restore uses
// both, and each program checks its memory.
func TestPageServerTree(t *testing.T) {
	for _, name := range []string{"fork_cow", "shm_anon_fork", "memfd_fork", "sysv_shm00"} {
		t.Run(name, func(t *testing.T) {
			c := startCase(t, name)
			c.mustDumpToPageServer(testEnv.amber, "images")
			c.requireServerImages("images")
			c.mustRestoreDetached()
			c.mustPass()
		})
	}
}

// TestPageServerChain pre-dumps predump_writer to a page server, then
// dumps it on top to another (each writing into its images directory,
// the second linked to the first with --prev-images-dir): the dump sends
// only the pages written since and leaves the others to the pre-dump's
// images. The chain restores, and crit reads the server's pagemaps.
func TestPageServerChain(t *testing.T) {
	c := startCase(t, "predump_writer")
	s := c.startPageServer(testEnv.amber, "pre1")
	c.mustPreDump("pre1", "", s.args()...)
	s.mustExit()
	c.requireServerImages("pre1")
	s = c.startPageServer(testEnv.amber, "images", "--prev-images-dir", "../pre1")
	c.mustDumpOntoWith("../pre1", s.args())
	s.mustExit()
	c.requireServerImages("images")
	c.requireIncremental("images")
	c.mustRestoreDetached()
	c.requireNoUffd()
	c.mustPass()
	c.critDecodesPagemaps("pre1", "images")
}

// TestPageServerChainElsewhere is TestPageServerChain with each page
// server writing into a directory of its own, as on another machine:
// the dump knows what its parent holds from its record of what the
// pre-dump sent. Once the servers' images join the dump's, the chain
// restores.
func TestPageServerChainElsewhere(t *testing.T) {
	c := startCase(t, "predump_writer")
	s := c.startPageServer(testEnv.amber, "srv1")
	c.mustPreDump("pre1", "", s.args()...)
	s.mustExit()
	s = c.startPageServer(testEnv.amber, "srv2", "--prev-images-dir", "../srv1")
	c.mustDumpOntoWith("../pre1", s.args())
	s.mustExit()
	c.requireIncremental("srv2")
	moveImages(t, filepath.Join(c.dir, "srv1"), filepath.Join(c.dir, "pre1"))
	moveImages(t, filepath.Join(c.dir, "srv2"), c.images)
	c.mustRestoreDetached()
	c.mustPass()
}

// TestPageServerRefused: a dump to a page server nobody listens for
// fails naming it and leaves the program running as it was.
func TestPageServerRefused(t *testing.T) {
	c := startCase(t, "predump_writer")
	port := freePort(t)
	r := c.dump("--page-server", "--address", "127.0.0.1", "--port", strconv.Itoa(port))
	requireFailure(t, r, fmt.Sprintf("page server 127.0.0.1:%d", port))
	requireFailure(t, r, "connection refused")
	c.requireRunsOn()
	c.mustPass()
}

// TestPageServerGone: the page server goes away in the middle of the
// pages (a server that answers the open, reads a little and closes the
// connection): the dump fails and the program runs on as it was.
func TestPageServerGone(t *testing.T) {
	c := startCase(t, "predump_writer")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go dyingServer(ln)
	port := ln.Addr().(*net.TCPAddr).Port
	r := c.dump("--page-server", "--address", "127.0.0.1", "--port", strconv.Itoa(port))
	requireFailure(t, r, fmt.Sprintf("page server 127.0.0.1:%d", port))
	c.requireRunsOn()
	c.mustPass()
}

// TestPageServerStalls: the page server stops reading in the middle of
// the pages without closing the connection (a server that answers the
// open, then only holds the connection): the dump gives up after
// --timeout, naming the server, and the program runs on as it was.
func TestPageServerStalls(t *testing.T) {
	c := startCase(t, "predump_writer")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	release := make(chan struct{})
	defer close(release)
	go stallingServer(ln, release)
	port := ln.Addr().(*net.TCPAddr).Port
	r := c.dump("--page-server", "--address", "127.0.0.1", "--port", strconv.Itoa(port), "--timeout", "2")
	requireFailure(t, r, fmt.Sprintf("page server 127.0.0.1:%d", port))
	requireFailure(t, r, "no progress in 2s")
	c.requireRunsOn()
	c.mustPass()
}

// stallingServer accepts one connection, answers its first request (an
// open) with "no parent", then reads nothing more until release.
func stallingServer(ln net.Listener, release <-chan struct{}) {
	conn, err := ln.Accept()
	if err != nil {
		return
	}
	defer conn.Close()
	var req [pageserver.RequestSize]byte
	if _, err := io.ReadFull(conn, req[:]); err != nil {
		return
	}
	conn.Write([]byte{0})
	<-release
}

// dyingServer accepts one connection, answers its first request (an
// open) with "no parent", reads 1 MiB and closes the connection.
func dyingServer(ln net.Listener) {
	conn, err := ln.Accept()
	if err != nil {
		return
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	var req [pageserver.RequestSize]byte
	if _, err := io.ReadFull(br, req[:]); err != nil {
		return
	}
	conn.Write([]byte{0})
	io.CopyN(io.Discard, br, 1<<20)
}

// requireRunsOn requires that the program runs (after a failed dump).
func (c *zcase) requireRunsOn() {
	c.t.Helper()
	if ok, err := progressing(c.pid, 200*time.Millisecond); err != nil || !ok {
		c.t.Fatalf("pid %d does not run on after the failed dump (%v)", c.pid, err)
	}
}

// TestAmberDumpsToCriuPageServer dumps predump_writer with amber to
// CRIU's page server, writing into the same directory, and restores it
// with amber, then again (dumped the same way) with CRIU: the program
// checks every page.
func TestAmberDumpsToCriuPageServer(t *testing.T) {
	for _, restorer := range []string{"amber", "criu"} {
		t.Run("restore by "+restorer, func(t *testing.T) {
			bin := criuBin(t)
			c := startCase(t, "predump_writer")
			c.mustDumpToPageServer(bin, "images")
			c.requireServerImages("images")
			c.restoreBy(restorer, bin)
			c.mustPass()
		})
	}
}

// restoreBy restores the program with amber or with CRIU (bin).
func (c *zcase) restoreBy(restorer, bin string) {
	c.t.Helper()
	if restorer == "amber" {
		c.mustRestoreDetached()
		return
	}
	pidfile := c.pidfile()
	if r := c.criu(bin, c.restoreArgs(pidfile, "-d")...); r.err != nil {
		c.t.Fatalf("criu restore failed: %v", r)
	}
	c.checkRestoredPid(pidfile)
}

// TestAmberChainToCriuPageServer pre-dumps predump_writer with amber to
// CRIU's page server, then dumps it on top to another CRIU page server
// linked to the first's images (--prev-images-dir): CRIU's server takes
// the pages left to the parent (it checks them against the parent's
// pagemap) and amber restores the chain.
func TestAmberChainToCriuPageServer(t *testing.T) {
	bin := criuBin(t)
	c := startCase(t, "predump_writer")
	s := c.startPageServer(bin, "pre1")
	c.mustPreDump("pre1", "", s.args()...)
	s.mustExit()
	s = c.startPageServer(bin, "images", "--prev-images-dir", "../pre1")
	c.mustDumpOntoWith("../pre1", s.args())
	s.mustExit()
	c.requireIncremental("images")
	c.mustRestoreDetached()
	c.mustPass()
}

// TestCriuDumpsToAmberPageServer dumps predump_writer with CRIU to
// amber's page server, and restores it with amber, then again (dumped
// the same way) with CRIU.
func TestCriuDumpsToAmberPageServer(t *testing.T) {
	for _, restorer := range []string{"amber", "criu"} {
		t.Run("restore by "+restorer, func(t *testing.T) {
			bin := criuBin(t)
			c := startCase(t, "predump_writer")
			s := c.startPageServer(testEnv.amber, "images")
			tree := descendants(c.pid)
			if r := c.criu(bin, c.dumpArgs(s.args()...)...); r.err != nil {
				t.Fatalf("criu dump failed: %v", criuLog(r, c.images))
			}
			s.mustExit()
			c.reapDumped(tree)
			c.requireServerImages("images")
			c.restoreBy(restorer, bin)
			c.mustPass()
		})
	}
}

// TestPageServerPsSocket: `amber page-server --ps-socket FD` serves a
// connection made already (one end of a socket pair, as go-criu's phaul
// hands the page server its migration's connection), not a listener:
// the pages a client sends on the other end are in the images it
// writes.
func TestPageServerPsSocket(t *testing.T) {
	requireAmber(t)
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	cln, srv := os.NewFile(uintptr(fds[0]), "client"), os.NewFile(uintptr(fds[1]), "server")
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), amberTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, testEnv.amber, "page-server", "-D", dir, "--ps-socket", "3", "-v4", "-o", "page-server.log")
	cmd.ExtraFiles = []*os.File{srv}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	srv.Close()
	// The connection is a copy of cln: the server sees the end of the
	// session once both are closed.
	conn, err := net.FileConn(cln)
	cln.Close()
	if err != nil {
		t.Fatal(err)
	}
	pages := make([]byte, 3*os.Getpagesize())
	for i := range pages {
		pages[i] = byte(i*7 + 3)
	}
	const pid, vaddr = 4242, 0x7f0000010000
	conn.SetDeadline(time.Now().Add(amberTimeout))
	c := pageserver.NewClient(conn, "the socket pair")
	if _, err := c.OpenTask(pid); err != nil {
		t.Fatal(err)
	}
	if err := c.Add(vaddr, pages); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("close the session: %v", err)
	}
	if err := cmd.Wait(); err != nil {
		b, _ := os.ReadFile(filepath.Join(dir, "page-server.log"))
		t.Fatalf("page server: %v\n%s", err, b)
	}
	d, err := image.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	head, entries, err := mem.ReadPagemap(d.PagemapPath(pid))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].GetVaddr() != vaddr || mem.NrPages(entries[0]) != 3 || entries[0].GetFlags() != mem.PEPresent {
		t.Fatalf("pagemap: %v; want 3 pages at %#x", entries, vaddr)
	}
	got, err := os.ReadFile(d.PagesPath(head.GetPagesId()).String())
	if err != nil || !bytes.Equal(got, pages) {
		t.Fatalf("pages image: %d bytes, %v; not the pages sent", len(got), err)
	}
}

// TestPageServerPsSocketDump: `amber pre-dump` and `amber dump
// --page-server --ps-socket FD` send their pages over a connection made
// already, one end of a socket pair whose other end `amber page-server
// --ps-socket` serves, a server for each; the restore of the chain the
// servers wrote passes the program's check.
func TestPageServerPsSocketDump(t *testing.T) {
	c := startCase(t, "predump_writer")
	tree := descendants(c.pid)
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	cln, srv := os.NewFile(uintptr(fds[0]), "client"), os.NewFile(uintptr(fds[1]), "server")
	defer cln.Close()
	defer srv.Close()
	run := func(files []*os.File, args ...string) *exec.Cmd {
		ctx, cancel := context.WithTimeout(context.Background(), amberTimeout)
		t.Cleanup(cancel)
		cmd := exec.CommandContext(ctx, testEnv.amber, args...)
		cmd.Dir, cmd.ExtraFiles = c.dir, files
		return cmd
	}
	for _, step := range []struct{ verb, dir, prev string }{{"pre-dump", "pre1", ""}, {"dump", "images", "../pre1"}} {
		if err := os.MkdirAll(filepath.Join(c.dir, step.dir), 0o755); err != nil {
			t.Fatal(err)
		}
		sargs := []string{"page-server", "-D", step.dir, "--ps-socket", "3", "-v4", "-o", "page-server.log"}
		dargs := []string{step.verb, "-t", strconv.Itoa(c.pid), "-D", step.dir, "--page-server", "--ps-socket", "3", "-v4", "-o", "dump.log"}
		if step.prev != "" {
			sargs = append(sargs, "--prev-images-dir", step.prev)
			dargs = append(dargs, "--prev-images-dir", step.prev, "--track-mem")
		}
		server := run([]*os.File{srv}, sargs...)
		if err := server.Start(); err != nil {
			t.Fatal(err)
		}
		out, derr := run([]*os.File{cln}, dargs...).CombinedOutput()
		serr := server.Wait()
		if derr != nil || serr != nil {
			log, _ := os.ReadFile(filepath.Join(c.dir, step.dir, "page-server.log"))
			t.Fatalf("%s: %v\n%s\npage server: %v\n%s", step.verb, derr, out, serr, log)
		}
	}
	c.reapDumped(tree)
	c.requireIncremental("images")
	c.mustRestoreDetached()
	c.mustPass()
}
