package test

// amber migrate --lazy over loopback: the destination resumes the tree
// before its private anonymous memory came, and fetches it from the
// source's frozen tree. On one host the tree runs as the init of a pid
// namespace of its own, so that the restore has its PIDs while the
// frozen source holds them in another.

import (
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

var (
	migratedPid = regexp.MustCompile(`(?m)^migrated: pid (\d+) runs`)
	allInLine   = regexp.MustCompile(`(?m)^all pages in: ([\d.]+) ms`)
)

// startNsCase starts migrate_worker as the init of a pid namespace.
func startNsCase(t *testing.T) *zcase {
	return startNamespaced(t, "migrate_worker", unix.CLONE_NEWPID)
}

// TestMigrateLazy migrates migrate_worker (4 threads rewriting their
// pages, a pipe, a file it appends to) lazily, without pre-copy and
// with it, and as between two hosts (the downtime then read on two
// clocks). The freeze sends none of its private anonymous memory (the
// 8 MiB cold region is fetched after the resume); the source is killed
// once every page is in; the restored copy checks all its memory, its
// pipe and its file.
func TestMigrateLazy(t *testing.T) {
	for _, tc := range []struct {
		name  string
		extra []string
	}{
		{"no-pre-copy", []string{"--max-iters", "0"}},
		{"pre-copy", nil},
		{"two-hosts", []string{"--max-iters", "0", "--two-hosts"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := startNsCase(t)
			src := c.pid
			r := c.startReceive("received")
			res := c.migrate(r, nil, append([]string{"--lazy"}, tc.extra...)...)
			if res.err != nil {
				t.Fatalf("migrate --lazy: %v\nreceive:\n%s", res, readAll(r.out))
			}
			t.Logf("migrate --lazy:\n%s", res.stdout)
			if err := r.exited(); err != nil {
				t.Fatalf("amber receive: %v\n%s", err, readAll(r.out))
			}
			fr := frozenPages.FindStringSubmatch(res.stdout)
			if fr == nil || allInLine.FindStringSubmatch(res.stdout) == nil || !strings.Contains(res.stdout, "downtime: ") {
				t.Fatalf("migrate printed no frozen pages, downtime or all-in time:\n%s", res.stdout)
			}
			if frozen, _ := strconv.Atoi(fr[1]); frozen >= 2048 {
				t.Fatalf("the freeze sent %d pages; want fewer than the 8 MiB cold region, left lazy", frozen)
			}
			c.requireMovedFrom(src, r, res.stdout)
		})
	}
}

// requireMovedFrom requires that a migration, which printed stdout, moved
// the program from pid src to the pid it printed, the destination keeping
// no image, and that the program runs there and passes its checks.
func (c *zcase) requireMovedFrom(src int, r *receiver, stdout string) {
	c.t.Helper()
	pid := migratedPid.FindStringSubmatch(stdout)
	if pid == nil {
		c.t.Fatalf("migrate printed no pid:\n%s", stdout)
	}
	if alive(src) {
		c.t.Fatalf("the source pid %d runs after the migration", src)
	}
	r.requireEmpty()
	c.pid, _ = strconv.Atoi(pid[1])
	if c.pid == src {
		c.t.Fatalf("restored as pid %d, the source's own", c.pid)
	}
	c.requireRuns()
	c.mustPass()
}

// TestMigrateLazyNotPidns: on one host, a tree that is not the init of a
// pid namespace is refused (its restore would need the PIDs its frozen
// source holds) before it is touched; it runs on and passes.
func TestMigrateLazyNotPidns(t *testing.T) {
	c := startCase(t, "migrate_worker")
	r := c.startReceive("received")
	res := c.migrate(r, nil, "--lazy")
	requireFailure(t, res, "not the init of a pid namespace")
	r.exited()
	r.requireEmpty()
	c.requireRuns()
	c.mustPass()
}

// TestMigrateLazyKillSource kills amber migrate once it served half the
// lazy pages, after the commit: its frozen tree thaws and runs on, the
// destination's fetches fail and it kills its copy, removing its images.
func TestMigrateLazyKillSource(t *testing.T) {
	c := startNsCase(t)
	r := c.startReceive("received")
	res := c.migrate(r, []string{faultEnv + "=lazy-half"}, "--lazy", "--max-iters", "0")
	if res.err == nil || exitCode(res.err) != -1 {
		t.Fatalf("amber migrate was not killed: %v\n%s", res.err, res.stdout)
	}
	err := r.exited()
	log := readAll(r.out)
	if err == nil || !strings.Contains(log, "is killed") {
		t.Fatalf("amber receive: %v, want a failure that kills the copy:\n%s", err, log)
	}
	r.requireEmpty()
	requireOriginalPasses(c)
}

// TestMigrateLazyKillDestination kills amber receive once the restore is
// asked for, before it resumed anything: the source's dump finds its
// page connection closed and thaws the tree, which runs on; the
// destination's images are removed.
func TestMigrateLazyKillDestination(t *testing.T) {
	c := startNsCase(t)
	r := c.startReceive("received", faultEnv+"=restore-requested")
	res := c.migrate(r, nil, "--lazy", "--max-iters", "0")
	if res.err == nil {
		t.Fatalf("amber migrate succeeded:\n%s", res.stdout)
	}
	t.Logf("migrate: %v", strings.TrimSpace(res.stderr))
	r.exited()
	r.requireEmpty()
	requireOriginalPasses(c)
}

// TestMigrateLazyKillDestinationResumed kills amber receive right after
// the restored copy of lazy_mem resumed, its memory still coming: the
// source's session ends without every page, its tree thaws and runs on;
// the destination's guard kills the copy, which lost its userfaultfds
// and would read zeroes. lazy_mem, with no file to share with its copy
// on this one host, checks all its memory at SIGTERM.
func TestMigrateLazyKillDestinationResumed(t *testing.T) {
	killDestinationResumed(t, "--lazy", "--max-iters", "0")
}

// killDestinationResumed migrates lazy_mem, the init of a pid namespace,
// with extra options, killing amber receive right after the copy resumed:
// the migration fails, the destination keeps no image (on one host), the
// guard kills the copy, and the source runs on and passes its checks.
func killDestinationResumed(t *testing.T, extra ...string) {
	t.Helper()
	t.Setenv("LAZY_MIB", lazyMiB)
	c := startNamespaced(t, "lazy_mem", unix.CLONE_NEWPID)
	r := c.startReceive("received", faultEnv+"=lazy-resumed")
	res := c.migrate(r, nil, extra...)
	if res.err == nil {
		t.Fatalf("amber migrate succeeded:\n%s", res.stdout)
	}
	t.Logf("migrate: %v", strings.TrimSpace(res.stderr))
	if err := r.exited(); exitCode(err) != -1 {
		t.Fatalf("amber receive was not killed: %v\n%s", err, readAll(r.out))
	}
	if !slices.Contains(extra, "--two-hosts") {
		// On two hosts nobody is left to remove the images of the
		// destination amber killed there; on one the source does.
		r.requireEmpty()
	}
	c.requireOnlySource()
	requireOriginalPasses(c)
}

// liveCopies lists the live processes of the case's program that run in
// its directory (other tests' copies run in theirs).
func (c *zcase) liveCopies() []int {
	var out []int
	for _, pid := range pidsByComm(c.prog.name) {
		if cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid)); err == nil && cwd == c.dir {
			out = append(out, pid)
		}
	}
	return out
}
