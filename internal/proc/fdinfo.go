package proc

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// FdInfo is /proc/PID/fdinfo/FD.
type FdInfo struct {
	Pos   int64
	Flags uint32 // open flags (O_*), octal in the file
	MntID int
	Ino   uint64 // 0 on kernels too old to print "ino:"

	// Extra maps the key of every other line that appears once to its
	// raw, trimmed value, e.g. "eventfd-count" -> "5" (which the kernel
	// prints in hex). Keys are the text before the first colon, so an
	// inotify line's key is "inotify wd".
	Extra map[string]string
	// ExtraLines holds every other line verbatim and in order, including
	// those whose key repeats (epoll "tfd:", inotify, "lock:") and those
	// with no colon. Per-target parsers should read these, since a key
	// that repeats for two targets appears once for one.
	ExtraLines []string
}

// ParseFdinfo parses the text of /proc/PID/fdinfo/FD. The pos, flags and
// mnt_id lines are required; other lines depend on the file's kind and
// are kept raw.
func ParseFdinfo(r io.Reader) (FdInfo, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return FdInfo{}, err
	}
	return parseFdinfo(string(b))
}

// parseFdinfo parses fdinfo text line by line (lines as bufio.ScanLines
// cuts them), allocating little: a process may have tens of thousands of
// descriptors.
func parseFdinfo(text string) (FdInfo, error) {
	var fi FdInfo
	seen := make(map[string]int)
	for n := 1; text != ""; n++ {
		line, rest, _ := strings.Cut(text, "\n")
		line, text = strings.TrimSuffix(line, "\r"), rest
		if len(line) > maxLine {
			return FdInfo{}, fmt.Errorf("line %d: %w", n, bufio.ErrTooLong)
		}
		key, val, ok := strings.Cut(line, ":")
		val = strings.TrimSpace(val)
		seen[key]++
		if ok && seen[key] == 1 {
			handled, err := fi.setCommon(key, val)
			if err != nil {
				return FdInfo{}, fmt.Errorf("line %d: %w", n, err)
			}
			if handled {
				continue
			}
		}
		fi.ExtraLines = append(fi.ExtraLines, line)
	}
	for _, key := range []string{"pos", "flags", "mnt_id"} {
		if seen[key] == 0 {
			return FdInfo{}, fmt.Errorf("no %q line", key+":")
		}
	}
	fi.Extra = extraOnce(fi.ExtraLines, seen)
	return fi, nil
}

// ReadFdinfo reads /proc/PID/fdinfo/FD.
func ReadFdinfo(pid, fd int) (FdInfo, error) {
	path := pidPath(pid, "fdinfo/"+strconv.Itoa(fd))
	return readFdinfoAt(unix.AT_FDCWD, path, path)
}

// readFdinfoAt reads the fdinfo file name of the directory dir (or path,
// with AT_FDCWD); path names it in errors.
func readFdinfoAt(dir int, name, path string) (FdInfo, error) {
	// Most fdinfo files hold a few lines: one read into a small buffer,
	// without an *os.File, a bufio.Reader and a Scanner for each. fdinfo
	// is a seq_file and the buffer less than a page: a short read is all.
	var buf [fdinfoRead]byte
	text, fits, err := readSmallAt(dir, name, path, buf[:], true)
	if err != nil {
		return FdInfo{}, err
	}
	if !fits { // more than the buffer holds (epoll, inotify)
		return readParsedSize(path, fdinfoRead, ParseFdinfo)
	}
	fi, err := parseFdinfo(text)
	if err != nil {
		return FdInfo{}, fmt.Errorf("%s: %w", path, err)
	}
	return fi, nil
}

// fdinfoRead is the buffer fdinfo files are read with.
const fdinfoRead = 1 << 10

// setCommon stores the lines every fdinfo file starts with and reports
// whether key was one of them.
func (fi *FdInfo) setCommon(key, val string) (bool, error) {
	var err error
	switch key {
	case "pos":
		fi.Pos, err = strconv.ParseInt(val, 10, 64)
	case "flags":
		var n uint64
		n, err = strconv.ParseUint(val, 8, 32)
		fi.Flags = uint32(n)
	case "mnt_id":
		var n int64
		n, err = strconv.ParseInt(val, 10, 32)
		fi.MntID = int(n)
	case "ino":
		fi.Ino, err = strconv.ParseUint(val, 10, 64)
	default:
		return false, nil
	}
	if err != nil {
		return true, fmt.Errorf("%s: %w", key, err)
	}
	return true, nil
}

// extraOnce maps the keys of lines that appear once to their values.
func extraOnce(lines []string, seen map[string]int) map[string]string {
	extra := make(map[string]string)
	for _, line := range lines {
		key, val, ok := strings.Cut(line, ":")
		if ok && seen[key] == 1 {
			extra[key] = strings.TrimSpace(val)
		}
	}
	return extra
}
