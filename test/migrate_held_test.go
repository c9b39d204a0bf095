package test

// amber migrate without --lazy of a tree that is the init of a pid
// namespace, on one host and as between two (--two-hosts): the held
// handover. The destination restores while the source is frozen,
// resumes the tree before its memory is in and fills it from the images
// it received; the source is killed once every page is in.

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestMigrateHeld migrates migrate_worker (4 threads rewriting their
// pages, a pipe, a file it appends to), running as the init of a pid
// namespace, with pre-copy and without, on one host and as between two:
// migrate prints when every page was in after the resume, the source is
// gone after, the destination keeps no images, and the copy checks its
// memory, pipe and file.
func TestMigrateHeld(t *testing.T) {
	for _, tc := range []struct {
		name  string
		extra []string
	}{
		{"pre-copy", nil},
		{"no-pre-copy", []string{"--max-iters", "0"}},
		{"two-hosts", []string{"--two-hosts"}},
		{"two-hosts-no-pre-copy", []string{"--two-hosts", "--max-iters", "0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := startNsCase(t)
			src := c.pid
			r := c.startReceive("received")
			res := c.migrate(r, nil, tc.extra...)
			if res.err != nil {
				t.Fatalf("migrate: %v\nreceive:\n%s", res, readAll(r.out))
			}
			t.Logf("migrate:\n%s", res.stdout)
			if err := r.exited(); err != nil {
				t.Fatalf("amber receive: %v\n%s", err, readAll(r.out))
			}
			if allInLine.FindStringSubmatch(res.stdout) == nil || !strings.Contains(res.stdout, "downtime: ") ||
				!strings.Contains(res.stdout, "handover: held\n") {
				t.Fatalf("migrate printed no downtime or all-in time (not a held handover?):\n%s", res.stdout)
			}
			c.requireMovedFrom(src, r, res.stdout)
		})
	}
}

// TestMigrateHeldKillDestinationResumed kills amber receive right after
// the restored copy of lazy_mem resumed, its memory still coming from
// the images: the source, told nothing of every page, thaws its tree,
// which runs on; the destination's guard kills the copy, which lost its
// userfaultfds and would read zeroes. lazy_mem checks all its memory at
// SIGTERM.
func TestMigrateHeldKillDestinationResumed(t *testing.T) {
	t.Run("one-host", func(t *testing.T) { killDestinationResumed(t) })
	t.Run("two-hosts", func(t *testing.T) { killDestinationResumed(t, "--two-hosts") })
}

// TestMigrateHeldKillSource kills amber migrate right after it
// committed, the copy of lazy_mem about to run on the destination with
// its memory still coming from the images: the source's tree thaws, as
// it was never told every page was in, and runs on; the destination,
// whose control channel closes before every page is in, kills its copy
// instead of leaving two running, and removes its images. Killed once
// the destination restored the tree, before the commit, the copy never
// runs. lazy_mem checks all its memory at SIGTERM.
func TestMigrateHeldKillSource(t *testing.T) {
	for _, tc := range []struct {
		name, point, want string
		extra             []string
	}{
		{"one-host", "committed", "the source went away before every page was in", nil},
		{"two-hosts", "committed", "the source went away before every page was in", []string{"--two-hosts"}},
		{"before-commit", "restored-there", "waiting for the source's commit", nil},
		{"before-commit-two-hosts", "restored-there", "waiting for the source's commit", []string{"--two-hosts"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("LAZY_MIB", lazyMiB)
			c := startNamespaced(t, "lazy_mem", unix.CLONE_NEWPID)
			r := c.startReceive("received")
			res := c.migrate(r, []string{faultEnv + "=" + tc.point}, append([]string{"--max-iters", "0"}, tc.extra...)...)
			if res.err == nil || exitCode(res.err) != -1 {
				t.Fatalf("amber migrate was not killed at %s: %v\n%s", tc.point, res.err, res.stdout)
			}
			err := r.exited()
			log := readAll(r.out)
			if err == nil || !strings.Contains(log, tc.want) {
				t.Fatalf("amber receive: %v, want a failure that kills the copy:\n%s", err, log)
			}
			r.requireEmpty()
			c.requireOnlySource()
			requireOriginalPasses(c)
		})
	}
}

// requireOnlySource waits until the only live process of the case's
// program is the source, c.pid: a copy restored elsewhere is gone.
func (c *zcase) requireOnlySource() {
	c.t.Helper()
	deadline := time.Now().Add(exitTimeout)
	for {
		left := c.liveCopies()
		if len(left) == 1 && left[0] == c.pid {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s processes %v; want only the source %d", c.prog.name, left, c.pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestMigrateHeldTree migrates predump_writer, the init of a pid
// namespace, once it forked a child that rewrites its own copy of the
// hot pages, as between two hosts: both processes are restored held and
// resumed before their memory is in; after SIGTERM the parent checks
// its memory and has the child check its own.
func TestMigrateHeldTree(t *testing.T) {
	c := startNamespaced(t, "predump_writer", unix.CLONE_NEWPID)
	src := c.pid
	if err := os.WriteFile(filepath.Join(c.dir, "fork.now"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	c.waitChild()
	r := c.startReceive("received")
	res := c.migrate(r, nil, "--two-hosts")
	if res.err != nil {
		t.Fatalf("migrate: %v\nreceive:\n%s", res, readAll(r.out))
	}
	t.Logf("migrate:\n%s", res.stdout)
	if err := r.exited(); err != nil {
		t.Fatalf("amber receive: %v\n%s", err, readAll(r.out))
	}
	if allInLine.FindStringSubmatch(res.stdout) == nil || !strings.Contains(res.stdout, "handover: held\n") {
		t.Fatalf("migrate printed no held handover or all-in time:\n%s", res.stdout)
	}
	c.requireMovedFrom(src, r, res.stdout)
}
