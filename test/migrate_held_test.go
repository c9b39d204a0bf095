package test

// amber migrate of a tree that is the init of a pid namespace, on one
// host, without --lazy: the held handover. The destination restores
// while the source is frozen, resumes the tree before its memory is in
// and fills it from the images it received; the source is killed once
// every page is in.

import (
	"strings"
	"testing"
)

// TestMigrateHeld migrates migrate_worker (4 threads rewriting their
// pages, a pipe, a file it appends to), running as the init of a pid
// namespace, with pre-copy and without: migrate prints when every page
// was in after the resume, the source is gone after, the destination
// keeps no images, and the copy checks its memory, pipe and file.
func TestMigrateHeld(t *testing.T) {
	for _, tc := range []struct {
		name  string
		extra []string
	}{
		{"pre-copy", nil},
		{"no-pre-copy", []string{"--max-iters", "0"}},
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
			if allInLine.FindStringSubmatch(res.stdout) == nil || !strings.Contains(res.stdout, "downtime: ") {
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
	killDestinationResumed(t)
}
