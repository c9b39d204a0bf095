package files

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/regfile"
	"golang.org/x/sys/unix"

	"amber/internal/fsroot"
	"amber/internal/image"
)

// Restore refuses a regular file that changed since the dump: its size
// is in files.img (RegFileEntry.size, as CRIU has it), its modification
// time in amber-mtimes.txt. CRIU's RegFileEntry has no field for the
// time and amber adds none to CRIU's messages, so amber keeps the times
// in a file of its own, beside the images: CRIU and crit ignore it, and
// the images of a dump without it (CRIU's) are checked by size only.
//
// amber-mtimes.txt is text: lines starting with '#' are comments, every
// other line is "ID SECONDS NANOSECONDS", the file id of a regular file
// of files.img and its st_mtime.

// mtimesName is amber's record of modification times.
const mtimesName = "amber-mtimes.txt"

// FileCheck verifies at restore that the regular files of the images are
// still those dumped.
type FileCheck struct {
	// Stat looks files up as they are now (os.Stat outside tests).
	Stat func(path string) (os.FileInfo, error)
	// Lstat looks up symbolic links themselves (nil: os.Lstat).
	Lstat func(path string) (os.FileInfo, error)
	// Mtimes are the dumped modification times by file id; nil for a
	// dump without amber-mtimes.txt.
	Mtimes map[uint32]time.Time
	// Skip trusts files that exist as they are (--skip-file-check).
	Skip bool
	// Warnf reports a file restored although it changed (nil: nowhere).
	Warnf func(format string, args ...any)
}

// Reg verifies regular-file entry e: it exists and, unless Skip, has its
// dumped size and modification time.
func (c FileCheck) Reg(e *fdinfo.FileEntry) error {
	name := e.GetReg().GetName()
	stat := c.Stat
	if isSymlink(e.GetReg()) {
		stat = c.Lstat
		if stat == nil {
			stat = os.Lstat
		}
	}
	st, err := stat(name)
	if err != nil {
		return fmt.Errorf("file %s (id %d) is gone since the dump: %w", name, e.GetId(), err)
	}
	if c.Skip {
		return nil
	}
	if grewForWriting(e, st) {
		if c.Warnf != nil {
			c.Warnf("file %s (id %d) grew from %d to %d bytes since the dump; the process had it open for writing "+
				"(its log, redirected output?): restored as it is now", name, e.GetId(), e.GetReg().GetSize(), st.Size())
		}
		return nil
	}
	// One stat answers both checks: a process may have thousands of files.
	if err := CheckReg(e, func(string) (os.FileInfo, error) { return st, nil }); err != nil {
		return err
	}
	want, ok := c.Mtimes[e.GetId()]
	if got := st.ModTime(); ok && st.Mode().IsRegular() && !sameMtime(got, want) {
		return fmt.Errorf("file %s (id %d) changed since the dump: modified %s, was %s (--skip-file-check restores anyway)",
			name, e.GetId(), got.Format(time.RFC3339Nano), want.Format(time.RFC3339Nano))
	}
	return nil
}

// sameMtime tells whether a file's modification time now, got, is the
// dumped one, want, or want as a copy of the file keeps it with less
// precision: microseconds (utimes), or whole seconds, cut or rounded
// (tar's ustar and GNU headers; Go's archive/tar rounds. Podman's
// checkpoint --export carries the container's changed files in such an
// archive, and its restore --import then found them changed, in about
// one run of twelve).
func sameMtime(got, want time.Time) bool {
	for _, unit := range []time.Duration{time.Nanosecond, time.Microsecond, time.Second} {
		if got.Equal(want.Truncate(unit)) {
			return true
		}
	}
	return got.Equal(want.Round(time.Second))
}

// isSymlink tells a symbolic link opened itself (O_PATH|O_NOFOLLOW):
// the check must not follow it, its target may be anything.
func isSymlink(reg *regfile.RegFileEntry) bool {
	return reg.GetMode()&unix.S_IFMT == unix.S_IFLNK
}

// grewForWriting reports a file that only grew since the dump while the
// process had it open for writing: a log or redirected output that
// another writer (a shell sharing it, the process itself left running by
// dump -R) appended to. Its dumped bytes are presumed unchanged (amber
// keeps no checksum of them), so it is restored as it is, with a warning,
// where any other change refuses the restore.
func grewForWriting(e *fdinfo.FileEntry, st os.FileInfo) bool {
	reg := e.GetReg()
	return reg.Size != nil && st.Mode().IsRegular() && reg.GetFlags()&unix.O_ACCMODE != unix.O_RDONLY &&
		uint64(st.Size()) > reg.GetSize()
}

// VerifiedPath is RegPath that also verifies the file with c.
func (idx Index) VerifiedPath(c FileCheck) func(id uint32) (string, error) {
	return func(id uint32) (string, error) {
		path, err := idx.RegPath(id)
		if err != nil {
			return "", err
		}
		return path, c.Reg(idx[id])
	}
}

// fileCheck is the check of the files of in.
func (in *RestoreInput) fileCheck() FileCheck {
	return FileCheck{Stat: in.Stat, Lstat: in.Lstat, Mtimes: in.extra().Mtimes, Skip: in.SkipFileCheck, Warnf: in.Warnf}
}

// writeMtimes records the modification time of every regular file of the
// table, but unlinked ones (their ghost is made again), as the dump saw
// the file itself: not whatever its path names by the end of the dump.
// Files of /proc are left out: their times are when their inodes were
// made, and differ for the same file after a restore.
func writeMtimes(dir image.Dir, t *Table, g *ghostState) error {
	b := []byte("# amber: modification times of the regular files of files.img\n# file-id seconds nanoseconds\n")
	procfs := map[uint64]bool{} // by device, learnt from a path on it
	for _, e := range t.entries {
		tm, ok := t.times[e.GetId()]
		if e.GetType() != fdinfo.FdTypes_REG || !ok || g.isGhost(e.GetId()) || g.isDeadProc(e.GetId()) {
			continue
		}
		isProc, seen := procfs[tm.dev]
		if !seen {
			isProc = onProcfs(t.root, e.GetReg().GetName())
			procfs[tm.dev] = isProc
		}
		if !isProc { // appended: Fprintf for each of thousands of files showed in a dump's profile
			b = strconv.AppendUint(b, uint64(e.GetId()), 10)
			b = append(b, ' ')
			b = strconv.AppendInt(b, tm.mtime.Unix(), 10)
			b = append(b, ' ')
			b = strconv.AppendInt(b, int64(tm.mtime.Nanosecond()), 10)
			b = append(b, '\n')
		}
	}
	return dir.File(mtimesName).WriteFile(b)
}

// onProcfs tells whether path is on a procfs.
func onProcfs(root *fsroot.Root, path string) bool {
	fd, err := root.Open(path, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	var fs unix.Statfs_t
	return unix.Fstatfs(fd, &fs) == nil && fs.Type == unix.PROC_SUPER_MAGIC
}

// readMtimes reads amber-mtimes.txt; nil if the dump has none.
func readMtimes(dir image.Dir) (map[uint32]time.Time, error) {
	p := dir.File(mtimesName)
	f, err := p.Open()
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[uint32]time.Time{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		id, t, err := parseMtime(line)
		if err != nil {
			return nil, fmt.Errorf("%s: line %d: %w", p, n, err)
		}
		out[id] = t
	}
	return out, sc.Err()
}

// parseMtime parses "ID SECONDS NANOSECONDS".
func parseMtime(line string) (uint32, time.Time, error) {
	f := strings.Fields(line)
	if len(f) != 3 {
		return 0, time.Time{}, fmt.Errorf("%q: want ID SECONDS NANOSECONDS", line)
	}
	var n [3]int64
	for i, bits := range []int{32, 64, 32} {
		v, err := strconv.ParseInt(f[i], 10, bits)
		if err != nil {
			return 0, time.Time{}, fmt.Errorf("%q: %w", line, err)
		}
		n[i] = v
	}
	if n[0] <= 0 || n[2] < 0 || n[2] >= 1e9 {
		return 0, time.Time{}, fmt.Errorf("%q: out of range", line)
	}
	return uint32(n[0]), time.Unix(n[1], n[2]), nil
}

// statAheadMin is the least regular files worth stat-ing ahead.
const statAheadMin = 256

// StatAhead starts stat-ing the paths of the regular files of idx in the
// background, with one goroutine per CPU, when there are many, and
// returns a stat that answers from those results, waiting for them the
// first time it is called: the restore checks every file before it plans
// to open it, a process may hold tens of thousands, and the calls can run
// while the rest of the images is read. A path that could not be
// stat-ed, or is not in idx, goes to stat at the time of the call.
func (idx Index) StatAhead(stat func(string) (os.FileInfo, error)) func(string) (os.FileInfo, error) {
	var paths []string
	for _, e := range idx {
		if e.GetType() == fdinfo.FdTypes_REG {
			paths = append(paths, e.GetReg().GetName())
		}
	}
	if len(paths) < statAheadMin {
		return stat
	}
	known := make(map[string]os.FileInfo, len(paths))
	done := make(chan struct{})
	go func() {
		defer close(done)
		infos := make([]os.FileInfo, len(paths))
		eachAtOnce(len(paths), runtime.GOMAXPROCS(0), func(i int) { infos[i], _ = stat(paths[i]) })
		for i, p := range paths {
			if infos[i] != nil {
				known[p] = infos[i]
			}
		}
	}()
	return func(path string) (os.FileInfo, error) {
		<-done
		if st, ok := known[path]; ok {
			return st, nil
		}
		return stat(path)
	}
}
