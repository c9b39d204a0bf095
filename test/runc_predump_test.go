package test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"amber/internal/image"
	"amber/internal/mem"
)

// keeperLoop is the loop of the pre-dump tests' container program: a
// string of 30,000 numbers built once, before any pre-dump, and checked
// against its length on every turn of a counter loop. Its pages, never
// written again, are left to the pre-dump by the dump on top: a restore
// that lost them stops the loop, which then writes /tmp/bad. Each turn
// ends with then, and a tenth of a second's sleep.
func keeperLoop(then string) string {
	return "x=$(/bin/busybox seq 1 30000); n=${#x}; i=0; " +
		"while true; do i=$((i+1)); if [ ${#x} != $n ]; then echo lost > /tmp/bad; exit 1; fi; " +
		"echo $i > /tmp/counter; " + then + "/bin/busybox sleep 0.1; done"
}

// runcKeeper is the loop for runc: the counter on its tmpfs.
var runcKeeper = keeperLoop("")

// TestRuncPreDump checkpoints a runc container as `runc checkpoint
// --pre-dump` and `--parent-path` do, with amber as criu: two pre-dumps
// through the RPC's PRE_DUMP, the container running on after each, then
// the dump on top of them, which must leave the pages unwritten since
// to the pre-dumps; the restore of that chain must give the container
// back its memory (its own check) and its counter.
func TestRuncPreDump(t *testing.T) {
	c := newRuncCase(t)
	c.updateSpec(func(spec map[string]any) {
		spec["process"].(map[string]any)["args"] = []string{"/bin/busybox", "sh", "-c", runcKeeper}
	})
	c.mustRunc("run", "-d", "--bundle", c.bundle, c.id)
	n := c.waitAbove(3)
	dirs := []string{"pre1", "pre2", "final"}
	for i, name := range dirs {
		args := []string{"checkpoint", "--image-path", filepath.Join(c.images, name), "--work-path", c.work}
		if i < 2 {
			args = append(args, "--pre-dump")
		}
		if i > 0 {
			args = append(args, "--parent-path", "../"+dirs[i-1])
		}
		if out, err := c.runc(append(args, c.id)...); err != nil {
			t.Fatalf("checkpoint %s: %v\n%s\n%s", name, err, out, c.logs())
		}
		if i < 2 {
			// A pre-dump leaves the container running.
			n = c.waitAbove(n)
		}
	}
	for i, name := range dirs {
		present, inParent := runcPageCounts(t, filepath.Join(c.images, name))
		t.Logf("%s: %d pages in its pages images, %d left to %s", name, present, inParent, "the images before")
		switch {
		case i == 0 && (present == 0 || inParent > 0):
			t.Fatalf("%s: %d pages in its pages images, %d left to parent images; want every page there", name, present, inParent)
		case i > 0 && (inParent == 0 || present >= inParent):
			t.Fatalf("%s: %d pages in its pages images, %d left to %s; want most left there", name, present, inParent, dirs[i-1])
		}
	}
	if out, err := c.runc("restore", "-d", "--image-path", filepath.Join(c.images, "final"), "--work-path", c.work, "--bundle", c.bundle, c.id); err != nil {
		t.Fatalf("restore: %v\n%s\n%s", err, out, c.logs())
	}
	after := c.counter()
	if after < n {
		t.Fatalf("counter %d after the restore, was %d at the last pre-dump: it started again", after, n)
	}
	c.waitAbove(after)
	if _, err := os.Stat(fmt.Sprintf("/proc/%d/root/tmp/bad", c.initPid())); err == nil {
		t.Fatal("the restored container lost the memory its pre-dumps held")
	}
}

// runcPageCounts counts the pages of every pagemap in the images
// directory dir: in its pages images, and left to the parent images.
func runcPageCounts(t *testing.T, dir string) (present, inParent uint64) {
	t.Helper()
	d, err := image.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	paths, err := filepath.Glob(filepath.Join(dir, "pagemap-*.img"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("%s: no pagemap (%v)", dir, err)
	}
	for _, p := range paths {
		_, entries, err := mem.ReadPagemap(d.File(filepath.Base(p)))
		if err != nil {
			t.Fatal(err)
		}
		pr, ip := countPages(entries)
		present, inParent = present+pr, inParent+ip
	}
	return present, inParent
}

// TestRuncLazyPages migrates a runc container lazily, as runc's own
// lazy migration goes, with amber as criu: `runc checkpoint
// --lazy-pages --page-server --status-fd` leaves the container's memory
// out of its images and serves it, and says so on its status descriptor
// (CRIU's status-ready notification, which runc turns into that byte);
// `amber lazy-pages` then fetches it for `runc restore --lazy-pages` of
// a second container, whose counter goes on from where it was, and the
// checkpoint ends once every page went over, the first container gone.
func TestRuncLazyPages(t *testing.T) {
	c := newRuncCase(t)
	c.mustRunc("run", "-d", "--bundle", c.bundle, c.id)
	n := c.waitAbove(3)
	port := strconv.Itoa(freePort(t))
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), amberTimeout)
	defer cancel()
	ck := exec.CommandContext(ctx, "runc", "--root", c.state, "--criu", testEnv.amber, "checkpoint", "--lazy-pages",
		"--page-server", "127.0.0.1:"+port, "--status-fd", "3", "--image-path", c.images, "--work-path", c.work, c.id)
	var ckOut strings.Builder
	ck.ExtraFiles, ck.Stdout, ck.Stderr = []*os.File{w}, &ckOut, &ckOut
	if err := ck.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	var b [1]byte
	if n, err := r.Read(b[:]); n != 1 || b[0] != 0 {
		ck.Wait()
		t.Fatalf("runc checkpoint --lazy-pages: no ready byte on --status-fd (%v)\n%s\n%s", err, ckOut.String(), c.logs())
	}
	lazy := exec.CommandContext(ctx, testEnv.amber, "lazy-pages", "--page-server", "--address", "127.0.0.1", "--port", port,
		"-D", c.images, "-v4", "-o", filepath.Join(c.work, "lazy-pages.log"))
	if err := lazy.Start(); err != nil {
		t.Fatal(err)
	}
	id := c.id + "-2"
	t.Cleanup(func() { c.runc("delete", "-f", id) })
	if out, err := c.runc("restore", "-d", "--lazy-pages", "--image-path", c.images, "--work-path", c.work, "--bundle", c.bundle, id); err != nil {
		t.Fatalf("restore: %v\n%s\n%s", err, out, c.logs())
	}
	if err := lazy.Wait(); err != nil {
		b, _ := os.ReadFile(filepath.Join(c.work, "lazy-pages.log"))
		t.Fatalf("amber lazy-pages: %v\n%s", err, b)
	}
	if err := ck.Wait(); err != nil {
		t.Fatalf("runc checkpoint --lazy-pages: %v\n%s\n%s", err, ckOut.String(), c.logs())
	}
	restored := c.id
	c.id = id
	after := c.counter()
	if after < n {
		t.Fatalf("counter %d after the restore, was %d before the checkpoint: it started again", after, n)
	}
	c.waitAbove(after)
	if out, err := exec.Command("runc", "--root", c.state, "state", restored).CombinedOutput(); err == nil {
		t.Fatalf("the checkpointed container %s is still there after the migration:\n%s", restored, out)
	}
}
