package image_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/pstree"
	"golang.org/x/sys/unix"

	"amber/internal/image"
)

func newPstree() *pstree.PstreeEntry { return &pstree.PstreeEntry{} }

// victim creates a file outside the images directory that a planted
// symbolic link points to, and returns its path.
func victim(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(p, []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func requireIntact(t *testing.T, path string) {
	t.Helper()
	if b, err := os.ReadFile(path); err != nil || string(b) != "precious" {
		t.Errorf("%s now holds %q (%v): written through a symbolic link", path, b, err)
	}
}

// TestOpenRefusesSymlink: an image that is a symbolic link is not read,
// even one to a valid image; a FIFO under an image's name neither blocks
// nor is read.
func TestOpenRefusesSymlink(t *testing.T) {
	d := openTemp(t)
	real := openTemp(t).PstreePath()
	if err := image.WriteFile(real, image.Pstree, pstreeEntry(1, 0, 1)); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(real.String(), d.PstreePath().String()); err != nil {
		t.Fatal(err)
	}
	_, err := image.ReadFile(d.PstreePath(), image.Pstree, newPstree)
	if err == nil || !strings.Contains(err.Error(), "symbolic link") || !strings.Contains(err.Error(), d.PstreePath().String()) {
		t.Errorf("read through a symbolic link: %v", err)
	}
	if _, err := d.PstreePath().Stat(); err == nil {
		t.Errorf("Stat accepted a symbolic link")
	}
	if err := unix.Mkfifo(d.CorePath(1).String(), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := d.CorePath(1).Open(); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("open of a FIFO: %v", err)
	}
}

// TestCreateReplacesSymlink: a symbolic link planted under an image's
// name is replaced by the image; its target is untouched.
func TestCreateReplacesSymlink(t *testing.T) {
	d := openTemp(t)
	v := victim(t)
	for _, p := range []image.Path{d.PstreePath(), d.PagesPath(1)} {
		if err := os.Symlink(v, p.String()); err != nil {
			t.Fatal(err)
		}
	}
	if err := image.WriteFile(d.PstreePath(), image.Pstree, pstreeEntry(1, 0, 1)); err != nil {
		t.Fatal(err)
	}
	if err := d.PagesPath(1).WriteFile(make([]byte, 4096)); err != nil {
		t.Fatal(err)
	}
	requireIntact(t, v)
	for _, p := range []image.Path{d.PstreePath(), d.PagesPath(1)} {
		if st, err := os.Lstat(p.String()); err != nil || !st.Mode().IsRegular() {
			t.Errorf("%s: %v, %v; want a regular file", p, st, err)
		}
	}
}

// TestDirKeptAfterSwap: once opened, the directory is the one used, even
// if its path names another one later.
func TestDirKeptAfterSwap(t *testing.T) {
	top := t.TempDir()
	path := filepath.Join(top, "img")
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
	d, err := image.OpenDir(path)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	elsewhere := t.TempDir()
	if err := os.Rename(path, filepath.Join(top, "moved")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(elsewhere, path); err != nil {
		t.Fatal(err)
	}
	if err := image.WriteFile(d.PstreePath(), image.Pstree, pstreeEntry(1, 0, 1)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(top, "moved", "pstree.img")); err != nil {
		t.Errorf("not written into the directory opened: %v", err)
	}
	if _, err := os.Stat(filepath.Join(elsewhere, "pstree.img")); err == nil {
		t.Errorf("written where the path leads now")
	}
}

func TestIsDumpFile(t *testing.T) {
	for name, want := range map[string]bool{
		"core-123.img": true, "pages-1.img": true, "pagemap-shmem-77.img": true, "tcp-stream-1a2b.img": true,
		"ghost-file-3.img": true, "inventory.img": true, "pstree.img": true, "stats-dump": true,
		"amber-mtimes.txt": true, "amber-manifest.txt": true, "tmpfs-dev-12.tar.gz.img": true, "cow-5.img": true,
		"parent": true, "amber-track.txt": true,
		"disk.img": false, "core.img": false, "core-.img": false, "core-x.img": false, "dump.log": false,
		"notes.txt": false, "core-12.img.bak": false, "pages-1.img~": false,
	} {
		if got := image.IsDumpFile(name); got != want {
			t.Errorf("IsDumpFile(%q) = %v, want %v", name, got, want)
		}
	}
}

// TestRemoveStale: the images of an earlier dump go, a symbolic link
// among them without touching its target; the user's files and
// directories stay.
func TestRemoveStale(t *testing.T) {
	d := openTemp(t)
	v := victim(t)
	for _, n := range []string{"core-99.img", "pages-3.img", "stats-dump", "amber-mtimes.txt", "disk.img", "notes.txt", "dump.log"} {
		if err := os.WriteFile(d.File(n).String(), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(v, d.File("mm-5.img").String()); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(d.File("core-7.img").String(), 0o700); err != nil {
		t.Fatal(err)
	}
	removed, err := d.RemoveStale()
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(removed)
	if want := []string{"amber-mtimes.txt", "core-99.img", "mm-5.img", "pages-3.img", "stats-dump"}; !slices.Equal(removed, want) {
		t.Errorf("removed %v, want %v", removed, want)
	}
	left, _ := os.ReadDir(d.String())
	var names []string
	for _, e := range left {
		names = append(names, e.Name())
	}
	if want := []string{"core-7.img", "disk.img", "dump.log", "notes.txt"}; !slices.Equal(names, want) {
		t.Errorf("left %v, want %v", names, want)
	}
	requireIntact(t, v)
}

// TestTrustedDir: a trusted directory refuses a directory, a directory
// above it or an image that anyone but root and the caller can write,
// naming it; a sticky directory above (like /tmp) is fine.
func TestTrustedDir(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give files away")
	}
	top := t.TempDir()
	above := filepath.Join(top, "above")
	path := filepath.Join(above, "img")
	if err := os.MkdirAll(path, 0o755); err != nil {
		t.Fatal(err)
	}
	d, err := image.OpenDir(path)
	if err != nil {
		t.Fatal(err)
	}
	pst := d.PstreePath()
	if err := image.WriteFile(pst, image.Pstree, pstreeEntry(1, 0, 1)); err != nil {
		t.Fatal(err)
	}
	d.Close()
	const nobody = 65534
	for _, tc := range []struct {
		name   string
		setup  func() error
		caller int
		want   string // the path named, "" for none
		why    string
	}{
		{"root's", func() error { return nil }, 0, "", ""},
		{"directory writable by all", func() error { return os.Chmod(path, 0o777) }, 0, path, "every user"},
		{"sticky directory writable by all", func() error { return os.Chmod(path, os.ModeSticky|0o777) }, 0, path, "every user"},
		{"directory writable by its group", func() error { return os.Chmod(path, 0o775) }, 0, path, "group"},
		{"directory of another user", func() error { return os.Chown(path, nobody, nobody) }, 0, path, "uid 65534"},
		{"directory of the caller", func() error { return os.Chown(path, nobody, nobody) }, nobody, "", ""},
		{"directory above writable by all", func() error { return os.Chmod(above, 0o777) }, 0, above, "every user"},
		{"sticky directory above writable by all", func() error { return os.Chmod(above, os.ModeSticky|0o777) }, 0, "", ""},
		{"directory above of another user", func() error { return os.Chown(above, nobody, nobody) }, 0, above, "uid 65534"},
		{"image of another user", func() error { return os.Chown(pst.String(), nobody, nobody) }, 0, pst.String(), "uid 65534"},
		{"image writable by its group", func() error { return os.Chmod(pst.String(), 0o620) }, 0, pst.String(), "group"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, p := range []string{above, path} {
				must(t, os.Chmod(p, 0o755), os.Chown(p, 0, 0))
			}
			must(t, os.Chmod(pst.String(), 0o600), os.Chown(pst.String(), 0, 0))
			must(t, tc.setup())
			d, err := image.OpenTrustedDir(path, tc.caller)
			if err == nil {
				defer d.Close()
				_, err = image.ReadFile(d.PstreePath(), image.Pstree, newPstree)
			}
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tc.want != "" && (!errors.Is(err, image.ErrUntrusted) || !strings.Contains(err.Error(), tc.want+" ") ||
				!strings.Contains(err.Error(), tc.why)):
				t.Errorf("got %v, want an error naming %s and %q", err, tc.want, tc.why)
			}
		})
	}
}

func must(t *testing.T, errs ...error) {
	t.Helper()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestCreateLog: a log is never written through a symbolic link (it is
// refused, its target untouched); an old log is replaced, /dev/null
// opened as it is; a pidfile is created only where nothing is.
func TestCreateLog(t *testing.T) {
	dir := t.TempDir()
	v := victim(t)
	link := filepath.Join(dir, "restore.log")
	if err := os.Symlink(v, link); err != nil {
		t.Fatal(err)
	}
	if _, err := image.CreateLog(link); err == nil || !strings.Contains(err.Error(), "symbolic link") || !strings.Contains(err.Error(), link) {
		t.Errorf("log through a symbolic link: %v", err)
	}
	if _, err := image.CreateNew(link); err == nil {
		t.Errorf("pidfile through a symbolic link created")
	}
	requireIntact(t, v)
	old := filepath.Join(dir, "dump.log")
	if err := os.WriteFile(old, []byte("old log"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := image.CreateLog(old)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("new")
	f.Close()
	if b, _ := os.ReadFile(old); string(b) != "new" {
		t.Errorf("old log replaced by %q, want \"new\"", b)
	}
	f, err = image.CreateLog("/dev/null")
	if err != nil {
		t.Fatalf("log to /dev/null: %v", err)
	}
	f.Close()
	if _, err := image.CreateNew(old); err == nil {
		t.Errorf("pidfile over an existing file created")
	}
	f, err = image.CreateNew(filepath.Join(dir, "pid"))
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
}

// TestSharedDir: an images directory writable by all (as zdtm makes
// them) is read only through its manifest: without one it is refused;
// with one, what was verified is what is read, by amber and by the
// restored tasks, whatever is renamed into the directory afterwards.
func TestSharedDir(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the directory's owner must be root or the caller")
	}
	path := filepath.Join(t.TempDir(), "img")
	must(t, os.Mkdir(path, 0o755))
	w, err := image.OpenDir(path)
	if err != nil {
		t.Fatal(err)
	}
	must(t, image.WriteFile(w.PstreePath(), image.Pstree, pstreeEntry(7, 0, 7)),
		w.PagesPath(1).WriteFile([]byte("pages of 7")))
	w.Close()
	other := filepath.Join(t.TempDir(), "other")
	must(t, os.Mkdir(other, 0o755))
	w, err = image.OpenDir(other)
	if err != nil {
		t.Fatal(err)
	}
	must(t, image.WriteFile(w.PstreePath(), image.Pstree, pstreeEntry(9, 0, 9)),
		w.PagesPath(1).WriteFile([]byte("pages of 9")))
	w.Close()
	must(t, os.Chmod(path, 0o777))

	d, err := image.OpenTrustedDir(path, 0)
	if err != nil {
		t.Fatalf("shared directory refused at open: %v", err)
	}
	if _, err := image.VerifyManifest(d, nil); !errors.Is(err, image.ErrUntrusted) ||
		!strings.Contains(err.Error(), path+": has no "+image.ManifestName) {
		t.Errorf("without a manifest: %v, want a refusal naming %s", err, path)
	}
	d.Close()

	w, err = image.OpenDir(path)
	if err != nil {
		t.Fatal(err)
	}
	must(t, image.WriteManifest(w, nil))
	w.Close()
	d, err = image.OpenTrustedDir(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	check, err := image.VerifyManifest(d, image.IsPagesName)
	if err != nil {
		t.Fatalf("verified shared directory: %v", err)
	}
	must(t, check.Wait())
	// Someone who can write the directory moves another dump's images
	// (root's too, and unwritable by others) over these.
	for _, name := range []string{"pstree.img", "pages-1.img"} {
		must(t, os.Rename(filepath.Join(other, name), filepath.Join(path, name)))
	}
	pst, err := image.ReadFile(d.PstreePath(), image.Pstree, newPstree)
	if err != nil || len(pst) != 1 || pst[0].GetPid() != 7 {
		t.Errorf("pstree read after the swap: %v %v, want pid 7's", pst, err)
	}
	tf := d.PagesPath(1).ForTask()
	if !strings.HasPrefix(tf.Path, "/proc/") || tf.Flags&unix.O_NOFOLLOW != 0 {
		t.Errorf("a task opens the pages as %+v, want amber's verified descriptor", tf)
	}
	b, err := os.ReadFile(tf.Path)
	if err != nil || string(b) != "pages of 7" {
		t.Errorf("a task reads %q (%v), want the verified pages", b, err)
	}
	// An image added since the check is not there for the restore.
	must(t, os.WriteFile(filepath.Join(path, "core-7.img"), []byte("added"), 0o600))
	if _, err := d.File("core-7.img").Open(); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("an image added after the check: %v, want none", err)
	}
}
