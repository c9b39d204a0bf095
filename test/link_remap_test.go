package test

import (
	"os"
	"path/filepath"
	"testing"
)

// TestLinkRemapNeedsOption: without --link-remap a file removed from its
// path but linked elsewhere refuses the dump, which names the option; the
// program runs on untouched.
func TestLinkRemapNeedsOption(t *testing.T) {
	c := startCase(t, "link_remap")
	requireFailure(t, c.dump(), "--link-remap")
	requireNoLinkRemaps(t, c.dir)
	c.mustPass()
}

// TestLinkRemapFailedDump: a dump that fails after it linked the files
// back (on a corked UDP socket the program holds after them) removes its
// links: the program, which checks that its files have one link each,
// runs on and passes.
func TestLinkRemapFailedDump(t *testing.T) {
	t.Setenv("LINK_REMAP_REFUSE", "1")
	c := startCase(t, "link_remap")
	requireFailure(t, c.dump(linkRemap...), "corked UDP socket")
	requireNoLinkRemaps(t, c.dir)
	c.mustPass()
}

// requireNoLinkRemaps fails if a link_remap.N file is left in dir.
func requireNoLinkRemaps(t *testing.T, dir string) {
	t.Helper()
	left, err := filepath.Glob(filepath.Join(dir, "link_remap.[0-9]*"))
	if err != nil {
		t.Fatal(err)
	}
	if len(left) > 0 {
		t.Fatalf("links left behind: %v", left)
	}
	if _, err := os.Stat(filepath.Join(dir, "lr.plain")); err == nil {
		t.Fatalf("lr.plain exists again")
	}
}

// TestUnhashedCwd dumps unhashed_cwd, whose working directory is the
// /proc directory of a dead child, and restores it: as CRIU does (zdtm
// unhashed_proc), a helper task takes the dead child's pid while the
// directory is opened, then dies; the program finds its working
// directory still that of a dead process, under the same name.
func TestUnhashedCwd(t *testing.T) {
	c := startCase(t, "unhashed_cwd")
	c.mustDump()
	c.mustRestoreDetached()
	c.mustPass()
}

// TestLinkRemapTwice dumps link_remap twice, the first time letting it
// run on (--leave-running, as zdtm's --snaps does): the second dump finds
// the links the first one made for its removed files and uses them as
// they are, and the restore from it passes (zdtm's unlink_fstat03 with
// --snaps failed: "link_remap.7 exists and is another file").
func TestLinkRemapTwice(t *testing.T) {
	c := startCase(t, "link_remap")
	if r := c.dump(append([]string{"--leave-running"}, linkRemap...)...); r.err != nil {
		t.Fatalf("first dump: %v", r)
	}
	c.images = filepath.Join(c.dir, "images2")
	if err := os.Mkdir(c.images, 0o755); err != nil {
		t.Fatal(err)
	}
	c.mustDump()
	c.mustRestoreDetached()
	c.mustPass()
}
