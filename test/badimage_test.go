package test

import (
	"os"
	"path/filepath"
	"testing"

	criucore "github.com/checkpoint-restore/go-criu/v8/crit/images/criu-core"

	"amber/internal/image"
)

// TestRestoreOtherArchitecture rewrites the core image as if dumped on
// aarch64: restore must refuse it, naming the file.
func TestRestoreOtherArchitecture(t *testing.T) {
	c := startCase(t, "heap_globals")
	c.mustDump()
	d, err := image.OpenDir(c.images)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	path := d.CorePath(c.pid)
	core, err := image.ReadOne(path, image.Core, func() *criucore.CoreEntry { return new(criucore.CoreEntry) })
	if err != nil {
		t.Fatal(err)
	}
	core.Mtype = criucore.CoreEntry_AARCH64.Enum()
	if err := image.WriteFile(path, image.Core, core); err != nil {
		t.Fatal(err)
	}
	c.dropManifest()
	r := c.restoreDetached(c.pidfile())
	requireFailure(t, r, path.Name())
	requireFailure(t, r, "architecture")
	c.requireLive()
}

// TestRestoreMappedFileGone removes, after the dump, the data file that
// maps_file maps thousands of times: restore must refuse, naming it, and
// leave nothing behind.
func TestRestoreMappedFileGone(t *testing.T) {
	c := startCase(t, "maps_file")
	c.mustDump()
	data, err := filepath.Glob(filepath.Join(c.dir, "maps_file.*"))
	if err != nil || len(data) == 0 {
		t.Fatalf("no maps_file data file in %s (%v)", c.dir, err)
	}
	for _, f := range data {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
	r := c.restoreDetached(c.pidfile())
	requireFailure(t, r, filepath.Base(data[0]))
	c.requireLive()
}

// TestRestoreMemfdImageGone deletes memfd.img of a process with a mapped
// memfd, and the manifest that would have caught it: restore must fail,
// naming what is missing, and leave nothing behind (it used to panic and
// leave the half-restored task running).
func TestRestoreMemfdImageGone(t *testing.T) {
	c := startCase(t, "memfd_mmap")
	c.mustDump()
	c.dropManifest()
	if err := os.Remove(filepath.Join(c.images, "memfd.img")); err != nil {
		t.Fatal(err)
	}
	r := c.restoreDetached(c.pidfile())
	requireFailure(t, r, "memfd.img")
	c.requireLive()
}
