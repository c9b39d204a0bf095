package test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/pagemap"
	"golang.org/x/sys/unix"

	"amber/internal/image"
	"amber/internal/mem"
)

// TestPreDumpChain pre-dumps predump_writer while it keeps rewriting its
// hot pages, checks that it runs on, dumps it on top of the pre-dump
// (--prev-images-dir --track-mem), kills it and restores the chain: the
// program checks every page itself. crit decodes the pagemaps of both
// levels.
func TestPreDumpChain(t *testing.T) {
	c := startCase(t, "predump_writer")
	c.mustPreDump("pre1", "")
	c.mustDumpOnto("../pre1")
	c.requireIncremental("images")
	c.mustRestoreDetached()
	c.requireNoUffd()
	c.mustPass()
	c.critDecodesPagemaps("pre1", "images")
}

// TestPreDumpChainOfTwo is TestPreDumpChain with two pre-dumps, the
// second on top of the first: a restore reads pages from three levels.
func TestPreDumpChainOfTwo(t *testing.T) {
	c := startCase(t, "predump_writer")
	c.mustPreDump("pre1", "")
	c.mustPreDump("pre2", "../pre1")
	c.requireIncremental("pre2")
	c.mustDumpOnto("../pre2")
	c.requireIncremental("images")
	c.mustRestoreDetached()
	c.requireNoUffd()
	c.mustPass()
	c.critDecodesPagemaps("pre1", "pre2", "images")
}

// TestPreDumpFork: predump_writer forks a child between two pre-dumps.
// The child inherits the tracking descriptor amber parked in its parent,
// which tracks the parent's memory: the second pre-dump gives the child
// a tracking of its own in its place, the dump on top hides both, and
// the child's unwritten pages too are left to the parent images. After
// restore the parent checks its memory and the child checks its own.
func TestPreDumpFork(t *testing.T) {
	c := startCase(t, "predump_writer")
	c.mustPreDump("pre1", "")
	if err := os.WriteFile(filepath.Join(c.dir, "fork.now"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	child := c.waitChild()
	c.mustPreDump("pre2", "../pre1")
	parentUffd, childUffd := c.uffdInode(c.pid), c.uffdInode(child)
	if parentUffd == childUffd {
		t.Fatalf("child %d still tracks its parent's memory (userfaultfd inode %d)", child, childUffd)
	}
	c.requireIncremental("pre2")
	c.mustDumpOnto("../pre2", child)
	c.requireIncremental("images")
	c.requireIncrementalOf("images", child)
	c.mustRestoreDetached()
	c.requireNoUffd()
	c.mustPass()
}

// TestPreDumpStaleParent: after two pre-dumps, a dump on top of the
// first is not on top of the last one the tracking counted from: pages
// written between the two are unwritten since the second. amber must
// notice and copy every page, and the chain restores.
func TestPreDumpStaleParent(t *testing.T) {
	c := startCase(t, "predump_writer")
	c.mustPreDump("pre1", "")
	c.mustPreDump("pre2", "../pre1")
	c.mustDumpOnto("../pre1")
	if present, inParent := c.pageCounts("images"); present < coldPages || inParent > 0 {
		t.Fatalf("images: %d pages in its pages image, %d left to pre1; want every page copied", present, inParent)
	}
	c.mustRestoreDetached()
	c.mustPass()
}

// TestPreDumpFailed: a pre-dump that fails once it has set up the
// tracking (its pagemap image cannot be written: a directory stands in
// its place) leaves the program running as it was, without the tracking
// descriptor; it is then dumped and restored whole.
func TestPreDumpFailed(t *testing.T) {
	c := startCase(t, "predump_writer")
	dir := filepath.Join(c.dir, "pre1")
	if err := os.MkdirAll(filepath.Join(dir, fmt.Sprintf("pagemap-%d.img", c.pid)), 0o755); err != nil {
		t.Fatal(err)
	}
	r := c.amber(program{}, "pre-dump", "-t", strconv.Itoa(c.pid), "-D", dir, "-v4", "-o", "dump.log")
	requireFailure(t, r, "pagemap")
	if ok, err := progressing(c.pid, 200*time.Millisecond); err != nil || !ok {
		t.Fatalf("pid %d does not run on after the failed pre-dump (%v)", c.pid, err)
	}
	if fds := c.uffds(); len(fds) > 0 {
		t.Fatalf("pid %d keeps a userfaultfd at %v after the failed pre-dump", c.pid, fds)
	}
	c.mustDump()
	c.mustRestoreDetached()
	c.mustPass()
}

// waitChild waits for the program's first child and returns its PID.
func (c *zcase) waitChild() int {
	c.t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if kids := childrenOf(c.pid); len(kids) > 0 {
			return kids[0]
		}
	}
	c.t.Fatalf("pid %d forked no child", c.pid)
	return 0
}

// uffdInode is the inode of the one userfaultfd of pid.
func (c *zcase) uffdInode(pid int) uint64 {
	c.t.Helper()
	fds := uffdsOf(c.t, pid)
	if len(fds) != 1 {
		c.t.Fatalf("pid %d has userfaultfds at %v; want one", pid, fds)
	}
	var st unix.Stat_t
	if err := unix.Stat(fmt.Sprintf("/proc/%d/fd/%s", pid, fds[0]), &st); err != nil {
		c.t.Fatal(err)
	}
	return st.Ino
}

// mustPreDump pre-dumps the program into dir (under the scratch dir), on
// top of prev if set, with extra options, and checks that it runs on.
func (c *zcase) mustPreDump(dir, prev string, extra ...string) {
	c.t.Helper()
	path := filepath.Join(c.dir, dir)
	if err := os.MkdirAll(path, 0o755); err != nil {
		c.t.Fatal(err)
	}
	args := []string{"pre-dump", "-t", strconv.Itoa(c.pid), "-D", path, "-v4", "-o", "dump.log"}
	if prev != "" {
		args = append(args, "--prev-images-dir", prev)
	}
	args = append(args, extra...)
	if r := c.amber(program{}, args...); r.err != nil {
		c.t.Fatalf("pre-dump failed: %v", r)
	}
	ok, err := progressing(c.pid, 200*time.Millisecond)
	if err != nil || !ok {
		c.t.Fatalf("pid %d does not run on after the pre-dump (%v)", c.pid, err)
	}
	c.requireParkedUffd()
	c.logPages(dir)
}

// requireParkedUffd requires that the program holds amber's tracking
// userfaultfd at the highest descriptor its RLIMIT_NOFILE allows, and no
// other userfaultfd.
func (c *zcase) requireParkedUffd() {
	c.t.Helper()
	var lim unix.Rlimit
	if err := unix.Prlimit(c.pid, unix.RLIMIT_NOFILE, nil, &lim); err != nil {
		c.t.Fatal(err)
	}
	want := fmt.Sprint(lim.Cur - 1)
	if got := c.uffds(); len(got) != 1 || got[0] != want {
		c.t.Fatalf("pid %d has userfaultfds at fds %v; want one, at %s", c.pid, got, want)
	}
}

// uffds lists the descriptors of the program that are userfaultfds.
func (c *zcase) uffds() []string {
	c.t.Helper()
	return uffdsOf(c.t, c.pid)
}

// uffdsOf lists the descriptors of pid that are userfaultfds.
func uffdsOf(t *testing.T, pid int) []string {
	t.Helper()
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, fd := range fds {
		if link, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name())); link == "anon_inode:[userfaultfd]" {
			out = append(out, fd.Name())
		}
	}
	return out
}

// mustDumpOnto dumps the program into its images dir on top of the
// images at prev (relative to it), then reaps it and its children.
func (c *zcase) mustDumpOnto(prev string, children ...int) {
	c.t.Helper()
	c.mustDumpOntoWith(prev, nil, children...)
}

// mustDumpOntoWith is mustDumpOnto with extra dump options.
func (c *zcase) mustDumpOntoWith(prev string, extra []string, children ...int) {
	c.t.Helper()
	if r := c.dump(append([]string{"--prev-images-dir", prev, "--track-mem"}, extra...)...); r.err != nil {
		c.t.Fatalf("dump failed: %v", r)
	}
	if _, err := waitPid(c.pid, exitTimeout); err != nil {
		c.t.Fatalf("after dump: %v", err)
	}
	for _, pid := range children {
		if err := reapOrphan(pid, exitTimeout); err != nil {
			c.t.Fatalf("after dump: %v", err)
		}
	}
	if target, err := os.Readlink(filepath.Join(c.images, image.ParentLink)); err != nil || target != prev {
		c.t.Fatalf("parent link: %q, %v; want %q", target, err, prev)
	}
	c.logPages("images")
}

// pageCounts counts the pages of the program's pagemap in the images
// directory dir: in its pages image, and left to the parent images.
func (c *zcase) pageCounts(dir string) (present, inParent uint64) {
	return c.pageCountsOf(dir, c.imagePid())
}

// pageCountsOf is pageCounts for process pid of the tree.
func (c *zcase) pageCountsOf(dir string, pid int) (present, inParent uint64) {
	c.t.Helper()
	d, err := image.OpenDir(filepath.Join(c.dir, dir))
	if err != nil {
		c.t.Fatal(err)
	}
	defer d.Close()
	_, entries, err := mem.ReadPagemap(d.PagemapPath(pid))
	if err != nil {
		c.t.Fatal(err)
	}
	return countPages(entries)
}

// countPages counts the pages of a pagemap's entries: in its pages
// image, and left to the parent images.
func countPages(entries []*pagemap.PagemapEntry) (present, inParent uint64) {
	for _, e := range entries {
		switch {
		case e.GetFlags()&mem.PEPresent != 0:
			present += mem.NrPages(e)
		case e.GetFlags()&mem.PEParent != 0:
			inParent += mem.NrPages(e)
		}
	}
	return present, inParent
}

// Pages of predump_writer: its cold memory (32 MiB), written before it
// is ready, and its hot pages, which it keeps rewriting.
const (
	coldPages = 8192
	hotPages  = 512
	// otherPages bounds what else it writes meanwhile: its stack, the
	// page of generations, libc's data.
	otherPages = 64
)

// requireIncremental requires that the images in dir hold only the
// pages written since the images before: at most the hot pages and a
// few others in their pages image, and all the cold ones left to the
// parent images.
func (c *zcase) requireIncremental(dir string) {
	c.t.Helper()
	c.requireIncrementalOf(dir, c.imagePid())
}

// requireIncrementalOf is requireIncremental for process pid of the tree.
func (c *zcase) requireIncrementalOf(dir string, pid int) {
	c.t.Helper()
	present, inParent := c.pageCountsOf(dir, pid)
	if present > hotPages+otherPages || inParent < coldPages {
		c.t.Fatalf("%s: %d pages in its pages image, %d left to the parent images; want at most %d (the pages written since) and at least %d (the cold ones)",
			fmt.Sprintf("%s (pid %d)", dir, pid), present, inParent, hotPages+otherPages, coldPages)
	}
}

// requireNoUffd requires that the restored program has no userfaultfd:
// the tracking amber parked in the original is not part of its state.
func (c *zcase) requireNoUffd() {
	c.t.Helper()
	if got := c.uffds(); len(got) > 0 {
		c.t.Fatalf("restored pid %d has userfaultfds at fds %v", c.pid, got)
	}
}

func (c *zcase) logPages(dir string) {
	// A dump to a page server elsewhere leaves no pagemap here.
	if _, err := os.Stat(filepath.Join(c.dir, dir, fmt.Sprintf("pagemap-%d.img", c.imagePid()))); err != nil {
		c.t.Logf("%s: no pagemap: %v", dir, err)
		return
	}
	present, inParent := c.pageCounts(dir)
	c.t.Logf("%s: %d pages in its pages image, %d left to the parent images", dir, present, inParent)
}

// critDecodesPagemaps decodes the program's pagemap in each images
// directory with crit, which must count the same pages in the pages
// image (PE_PRESENT) and in the parent images (PE_PARENT) as amber.
func (c *zcase) critDecodesPagemaps(dirs ...string) {
	c.t.Helper()
	crit := critCommand(c.t)
	for _, dir := range dirs {
		img := filepath.Join(c.dir, dir, fmt.Sprintf("pagemap-%d.img", c.pid))
		args := append(crit[1:len(crit):len(crit)], "decode", "-i", img)
		out, err := exec.Command(crit[0], args...).Output()
		if err != nil {
			c.t.Errorf("crit decode -i %s: %v\n%s", img, err, out)
			continue
		}
		var decoded struct {
			Entries []struct {
				NrPages uint64 `json:"nr_pages"`
				Flags   uint32 `json:"flags"`
			} `json:"entries"`
		}
		if err := json.Unmarshal(out, &decoded); err != nil {
			c.t.Errorf("crit decode -i %s: %v\n%.2000s", img, err, out)
			continue
		}
		var present, inParent uint64
		for _, e := range decoded.Entries {
			switch e.Flags {
			case mem.PEPresent:
				present += e.NrPages
			case mem.PEParent:
				inParent += e.NrPages
			}
		}
		if p, ip := c.pageCounts(dir); p != present || ip != inParent {
			c.t.Errorf("crit counts %d present and %d parent pages in %s, amber %d and %d", present, inParent, img, p, ip)
		}
	}
}

// TestKillAmberDuringPreDump kills `amber pre-dump` with SIGKILL at
// moments spread over a whole pre-dump of predump_writer. The program
// must run on as it was: alive, untraced, its signal masks and CPUs, and
// its descriptors but for amber's userfaultfd at the parking number
// (RLIMIT_NOFILE-1), never at a number it could be given. A plain dump
// then leaves that userfaultfd out, and the restored program checks its
// memory.
func TestKillAmberDuringPreDump(t *testing.T) {
	requireAmber(t)
	whole := wholePreDumpTime(t)
	const moments = 8
	for k := 0; k < moments; k++ {
		at := time.Duration(float64(whole) * (float64(k) + 0.5) / moments)
		t.Run(at.Round(time.Microsecond).String(), func(t *testing.T) { killPreDumpAt(t, at) })
	}
}

// wholePreDumpTime is how long a pre-dump of predump_writer takes, amber's
// start-up included.
func wholePreDumpTime(t *testing.T) time.Duration {
	t.Helper()
	c := startCase(t, "predump_writer")
	start := time.Now()
	c.mustPreDump("pre1", "")
	return time.Since(start)
}

func killPreDumpAt(t *testing.T, at time.Duration) {
	c := startCase(t, "predump_writer")
	before := snapshotTree(t, []int{c.pid})[c.pid]
	dir := filepath.Join(c.dir, "pre1")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), amberTimeout)
	defer cancel()
	cmd, stdout, stderr, err := amberCommand(ctx, testEnv.amber, c.dir, program{},
		"pre-dump", "-t", strconv.Itoa(c.pid), "-D", dir, "-v4", "-o", "dump.log")
	if err != nil {
		t.Fatal(err)
	}
	defer stdout.Close()
	defer stderr.Close()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(at)
	cmd.Process.Signal(unix.SIGKILL)
	if cmd.Wait() == nil {
		t.Logf("pre-dump finished before the kill")
	}
	after := waitSettled(t, []int{c.pid}, nil)[c.pid]
	var lim unix.Rlimit
	if err := unix.Prlimit(c.pid, unix.RLIMIT_NOFILE, nil, &lim); err != nil {
		t.Fatal(err)
	}
	parked := fmt.Sprintf("%d->anon_inode:[userfaultfd]", lim.Cur-1)
	fds := strings.Join(slices.DeleteFunc(strings.Fields(after.fds), func(f string) bool { return f == parked }), " ")
	if fds != after.fds {
		t.Logf("amber's userfaultfd stayed parked at fd %d", lim.Cur-1)
	}
	if fds != before.fds || after.masks != before.masks || after.cpus != before.cpus {
		t.Fatalf("pid %d changed by the killed pre-dump:\nfds %s\nmasks %s\ncpus %s\nwas\nfds %s\nmasks %s\ncpus %s\namber: %s",
			c.pid, after.fds, after.masks, after.cpus, before.fds, before.masks, before.cpus, readAll(stderr))
	}
	c.mustDump()
	c.mustRestoreDetached()
	c.requireNoUffd()
	c.mustPass()
}

// TestPreDumpChainUserns is TestPreDumpChainOfTwo for predump_writer in
// user and pid namespaces of its own: it has no CAP_SYS_PTRACE in the
// host's user namespace, so its parasite may make the tracking
// userfaultfd only as one of user-mode faults (vm.unprivileged_userfaultfd
// is 0 here), and the restore reads every level of the chain into a new
// user namespace.
func TestPreDumpChainUserns(t *testing.T) {
	p, _ := lookupProgram("predump_writer")
	p.cloneflags |= unix.CLONE_NEWPID
	p.userns = true
	c := startProgram(t, p)
	c.mustPreDump("pre1", "")
	c.mustPreDump("pre2", "../pre1")
	c.mustDumpOnto("../pre2")
	c.requireIncremental("images")
	pidfile := c.pidfile()
	if r := c.restoreDetached(pidfile); r.err != nil {
		t.Fatalf("restore failed: %v", r)
	}
	c.requireNewPidNamespace(pidfile)
	c.mustPass()
}

// TestPreDumpPrograms pre-dumps programs of the table, dumps them on top
// and restores the chain: each checks its own state. shm_anon_priv maps
// anonymous shared memory privately too, which the dump writes as a
// memfd: the pre-dump must take its mappings so as well (zdtm's
// shmemfd-priv with --pre failed on it).
func TestPreDumpPrograms(t *testing.T) {
	for _, name := range []string{"shm_anon_priv", "fork_cow", "threads_tls", "memfd_fork"} {
		t.Run(name, func(t *testing.T) {
			c := startCase(t, name)
			children := descendants(c.pid)
			pre := filepath.Join(c.dir, "pre1")
			if err := os.Mkdir(pre, 0o755); err != nil {
				t.Fatal(err)
			}
			// These programs wait for their signal: they run on, but
			// use no CPU time to show it (mustPreDump's check).
			if r := c.amber(program{}, "pre-dump", "-t", strconv.Itoa(c.pid), "-D", pre, "-v4", "-o", "dump.log"); r.err != nil {
				t.Fatalf("pre-dump failed: %v", r)
			}
			if !alive(c.pid) {
				t.Fatalf("pid %d gone after the pre-dump", c.pid)
			}
			c.mustDumpOnto("../pre1", children...)
			c.mustRestoreDetached()
			c.mustPass()
		})
	}
}
