package tarfs

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// sparseSize is the size of the test tree's sparse file: data at its
// start and in its middle, a hole at its end.
const sparseSize = 16 << 20

// makeTree fills dir with a file of every kind the tmpfs of a container
// holds, with owners, modes and times of their own: set-id and sticky
// bits, hard links across directories, symbolic links (one leading out
// of the tree), device nodes, a FIFO, a socket (left out), a sparse
// file, an empty one, a long and a non-ASCII name.
func makeTree(t *testing.T, dir string) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	p := func(name string) string { return filepath.Join(dir, name) }
	must(os.MkdirAll(p("a/b"), 0o755))
	must(os.Mkdir(p("sticky"), 0o755))
	must(os.WriteFile(p("a/file"), []byte("some data\n"), 0o644))
	must(os.WriteFile(p("suid"), bytes.Repeat([]byte("x"), 70000), 0o644))
	must(os.WriteFile(p("empty"), nil, 0o600))
	must(os.Link(p("a/file"), p("a/b/hardlink")))
	must(os.Link(p("a/file"), p("hardlink2")))
	must(os.Symlink("a/file", p("rel-link")))
	must(os.Symlink("/etc/passwd", p("abs-link")))
	must(unix.Mknod(p("null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	must(unix.Mknod(p("loop"), unix.S_IFBLK|0o660, int(unix.Mkdev(7, 200))))
	must(unix.Mkfifo(p("fifo"), 0o640))
	long := strings.Repeat("long-name-", 15)
	must(os.WriteFile(p("a/"+long), []byte("long"), 0o644))
	must(os.WriteFile(p("a/ünïcödé"), []byte("utf-8"), 0o644))
	f, err := os.Create(p("sparse"))
	must(err)
	_, err = f.WriteAt([]byte("head"), 0)
	must(err)
	_, err = f.WriteAt(bytes.Repeat([]byte{7}, 3*pageSize), sparseSize/2)
	must(err)
	must(f.Truncate(sparseSize))
	must(f.Close())
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	must(err)
	must(unix.Bind(fd, &unix.SockaddrUnix{Name: p("socket")}))
	unix.Close(fd)
	// Owners, modes (after chown, which clears set-id bits) and times.
	must(os.Chown(p("suid"), 1000, 1001))
	must(unix.Chmod(p("suid"), 0o4755))
	must(os.Chown(p("a/b"), 1234, 5678))
	must(unix.Chmod(p("a/b"), 0o2750))
	must(unix.Chmod(p("sticky"), 0o1777))
	must(os.Lchown(p("rel-link"), 42, 43))
	must(os.Chown(p("null"), 0, 5))
	must(os.Chown(p("sparse"), 3000000, 3000001)) // beyond USTAR's fields
	base := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)
	i := 0
	must(filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.Type()&fs.ModeSocket != 0 {
			return err
		}
		i++
		ts := unix.NsecToTimespec(base.Add(time.Duration(i) * 1001 * time.Millisecond).UnixNano())
		return unix.UtimesNanoAt(unix.AT_FDCWD, path, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW)
	}))
	// The directories' times, after their entries were made and touched.
	for _, d := range []string{"a/b", "a", "sticky", "."} {
		i++
		ts := unix.NsecToTimespec(base.Add(time.Duration(i) * 1001 * time.Millisecond).UnixNano())
		must(unix.UtimesNanoAt(unix.AT_FDCWD, p(d), []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW))
	}
}

// fileState is what a round trip keeps of a file.
type fileState struct {
	mode, uid, gid uint32
	mtime          int64 // nanoseconds; seconds only for GNU's format
	size           int64
	rdev           uint64
	target         string // a symbolic link's
	data           string // a regular file's, hashed for a large one
	link           string // the first name of its inode, if it has more
}

// readTree records every file under dir but sockets; mtimes rounded to
// prec.
func readTree(t *testing.T, dir string, prec time.Duration) map[string]fileState {
	t.Helper()
	tree := map[string]fileState{}
	inodes := map[uint64]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		var st unix.Stat_t
		if err := unix.Lstat(path, &st); err != nil {
			return err
		}
		if st.Mode&unix.S_IFMT == unix.S_IFSOCK {
			return nil
		}
		s := fileState{mode: st.Mode, uid: st.Uid, gid: st.Gid, mtime: st.Mtim.Nano() / int64(prec) * int64(prec), rdev: st.Rdev}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			s.size, s.data = st.Size, fmt.Sprintf("%x", b[:min(len(b), 64)])+fmt.Sprint(bytes.Count(b, []byte{7}))
		case unix.S_IFLNK:
			s.target, _ = os.Readlink(path)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR && st.Nlink > 1 {
			if first, ok := inodes[st.Ino]; ok {
				s.link = first
			} else {
				inodes[st.Ino] = rel
			}
		}
		tree[rel] = s
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return tree
}

// requireSameTree fails on each file that differs between want and the
// tree under dir, and if dir's sparse file lost its holes.
func requireSameTree(t *testing.T, want map[string]fileState, dir string, prec time.Duration) {
	t.Helper()
	got := readTree(t, dir, prec)
	for name, w := range want {
		if g, ok := got[name]; !ok {
			t.Errorf("%s: missing", name)
		} else if g != w {
			t.Errorf("%s: got %+v, want %+v", name, g, w)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("%s: not in the archived tree", name)
		}
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(dir, "sparse"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Blocks*512 > 1<<20 {
		t.Errorf("sparse: %d bytes allocated of %d: the holes were filled", st.Blocks*512, st.Size)
	}
}

func requireRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the tree has files of other owners and device nodes")
	}
}

func openDir(t *testing.T, dir string) *os.File {
	t.Helper()
	d, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// create archives dir with Create.
func create(t *testing.T, dir string) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := Create(&b, openDir(t, dir), IDs{}); err != nil {
		t.Fatalf("Create: %v", err)
	}
	return b.Bytes()
}

// extract unpacks archive into a new directory with Extract.
func extract(t *testing.T, archive []byte) string {
	t.Helper()
	dst := t.TempDir()
	if err := Extract(bytes.NewReader(archive), openDir(t, dst), IDs{}); err != nil {
		t.Fatalf("Extract: %v", err)
	}
	return dst
}

// TestRoundTrip archives a tree of every kind of file and unpacks it:
// the copy must have the same files, owners, modes, nanosecond times,
// device numbers, link targets, hard links, data and holes.
func TestRoundTrip(t *testing.T) {
	requireRoot(t)
	src := t.TempDir()
	makeTree(t, src)
	want := readTree(t, src, time.Nanosecond)
	if _, ok := want["socket"]; ok {
		t.Fatal("the socket was recorded")
	}
	archive := create(t, src)
	if len(archive) > 1<<20 {
		t.Errorf("archive of %d bytes: the sparse file's hole was archived", len(archive))
	}
	requireSameTree(t, want, extract(t, archive), time.Nanosecond)
}

// TestGNUTarReadsCreate: GNU tar unpacks what Create writes, as CRIU's
// restore does (tar --extract, without --preserve-permissions: root
// keeps them anyway).
func TestGNUTarReadsCreate(t *testing.T) {
	requireRoot(t)
	requireTar(t)
	src := t.TempDir()
	makeTree(t, src)
	want := readTree(t, src, time.Nanosecond)
	dst := t.TempDir()
	cmd := exec.Command("tar", "--extract", "--no-unquote", "--no-wildcards", "--directory", dst)
	cmd.Stdin = bytes.NewReader(create(t, src))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tar --extract: %v: %s", err, out)
	}
	requireSameTree(t, want, dst, time.Nanosecond)
}

// TestExtractReadsGNUTar: Extract unpacks what GNU tar writes with
// CRIU's options, in GNU tar's default format (CRIU's: times in whole
// seconds, the old GNU sparse headers) and in its POSIX one (amber's
// before: nanoseconds, PAX sparse 1.0).
func TestExtractReadsGNUTar(t *testing.T) {
	requireRoot(t)
	requireTar(t)
	for _, c := range []struct {
		format string
		prec   time.Duration
	}{{"gnu", time.Second}, {"posix", time.Nanosecond}} {
		t.Run(c.format, func(t *testing.T) {
			src := t.TempDir()
			makeTree(t, src)
			want := readTree(t, src, c.prec)
			cmd := exec.Command("tar", "--create", "--format="+c.format, "--no-unquote", "--no-wildcards", "--one-file-system",
				"--check-links", "--preserve-permissions", "--sparse", "--numeric-owner", "--directory", src, ".")
			var out, errs bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &errs
			if err := cmd.Run(); err != nil {
				t.Fatalf("tar --create: %v: %s", err, errs.Bytes())
			}
			requireSameTree(t, want, extract(t, out.Bytes()), c.prec)
		})
	}
}

func requireTar(t *testing.T) {
	if _, err := exec.LookPath("tar"); err != nil {
		t.Skip("no tar(1) (Debian package tar)")
	}
}
