package test

// amber migrate of a process whose mappings change all the time: the
// final dump must dump the layout the frozen process has, not the one a
// pre-dump read (it reuses a pre-dump's smaps only where maps shows no
// change, dump.Layouts).

import (
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestMigrateLayoutChurn migrates layout_churn, which changes one of its
// 16 regions after the other without a pause (mprotect, a move or a
// resize by mremap, new contents), with pre-copy: on one host as a
// plain process and as the init of a pid namespace (the held handover),
// the copy again until one final dump found the layout changed since
// its pre-dump (the churn must have run between them, which a loaded
// machine may not let it do: at most 6 times). Without pre-dumps
// (--max-iters 0, plain and lazy) the layout comes from a read just
// before the freeze instead. The last copy checks that each region is
// where the process left it, as large, with its protection and
// contents.
func TestMigrateLayoutChurn(t *testing.T) {
	for _, tc := range []struct {
		name  string
		flags uintptr
		args  []string
	}{{"one-host", 0, nil}, {"held", unix.CLONE_NEWPID, nil},
		{"no-pre-dump", 0, []string{"--max-iters", "0"}},
		{"lazy", unix.CLONE_NEWPID, []string{"--lazy", "--max-iters", "0"}}} {
		t.Run(tc.name, func(t *testing.T) {
			c := startNamespaced(t, "layout_churn", tc.flags)
			reused, changed := 0, 0
			for i := 0; i < 6 && changed == 0; i++ {
				src := c.pid
				r := c.startReceive("received")
				res := c.migrate(r, nil, tc.args...)
				if res.err != nil {
					t.Fatalf("migrate %d: %v\nreceive:\n%s", i+1, res, readAll(r.out))
				}
				if tc.args == nil && !preDumpPages.MatchString(res.stdout) {
					t.Fatalf("migrate %d did not pre-dump:\n%s", i+1, res.stdout)
				}
				if strings.Contains(res.stderr, "the smaps of the dump before serve") {
					reused++
				} else {
					changed++
				}
				if err := r.exited(); err != nil {
					t.Fatalf("amber receive: %v\n%s", err, readAll(r.out))
				}
				r.requireEmpty()
				if tc.flags != 0 {
					pid := migratedPid.FindStringSubmatch(res.stdout)
					if pid == nil || alive(src) {
						t.Fatalf("migrate %d: no pid printed, or the source %d runs on:\n%s", i+1, src, res.stdout)
					}
					c.pid, _ = strconv.Atoi(pid[1])
				}
				c.requireRuns()
			}
			t.Logf("final dumps: %d with the layout of the pre-dump, %d with a layout changed since", reused, changed)
			c.mustPass()
		})
	}
}
