package proc

import (
	"fmt"
	"io"
	"strconv"
	"strings"
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
	var fi FdInfo
	seen := make(map[string]int)
	err := eachLine(r, func(line string) error {
		key, val, ok := strings.Cut(line, ":")
		val = strings.TrimSpace(val)
		seen[key]++
		if ok && seen[key] == 1 {
			if handled, err := fi.setCommon(key, val); handled || err != nil {
				return err
			}
		}
		fi.ExtraLines = append(fi.ExtraLines, line)
		return nil
	})
	if err != nil {
		return FdInfo{}, err
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
	return readParsedSize(pidPath(pid, "fdinfo/"+strconv.Itoa(fd)), fdinfoRead, ParseFdinfo)
}

// fdinfoRead is the read size for fdinfo files: most hold a few lines,
// and a process may have tens of thousands of them, each read with a
// buffer of its own.
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
