package proc

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// maxLine bounds one line of a /proc text file. The longest real lines are
// smaps headers carrying a path (PATH_MAX is 4096); anything far beyond is
// not a /proc file.
const maxLine = 1 << 20

// pidPath returns /proc/PID/name.
func pidPath(pid int, name string) string {
	return "/proc/" + strconv.Itoa(pid) + "/" + name
}

// taskPath returns /proc/PID/task/TID/name.
func taskPath(pid, tid int, name string) string {
	return pidPath(pid, "task/"+strconv.Itoa(tid)+"/"+name)
}

// gone makes an ESRCH satisfy errors.Is(err, fs.ErrNotExist). A /proc file
// opened before its process exits fails its reads with ESRCH rather than
// ENOENT; callers should see one condition for "the process is gone".
func gone(err error) error {
	if errors.Is(err, syscall.ESRCH) && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w (%w)", err, fs.ErrNotExist)
	}
	return err
}

// Open opens a /proc file (or directory) for reading. os.Open would
// first offer the descriptor to Go's poller, which /proc files refuse:
// four fcntl calls and a failed epoll_ctl that cost more than reading a
// small /proc file, and a dump opens dozens of them for each process.
// Errors are *os.PathError, ESRCH made to satisfy fs.ErrNotExist.
func Open(path string) (*os.File, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, gone(&os.PathError{Op: "open", Path: path, Err: err})
	}
	return os.NewFile(uintptr(fd), path), nil
}

// ReadFile reads a whole /proc file, as os.ReadFile does but opened as
// Open opens it and without its fstat, which says nothing of a /proc
// file's length. Errors name the path.
func ReadFile(path string) ([]byte, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, gone(&os.PathError{Op: "open", Path: path, Err: err})
	}
	defer unix.Close(fd)
	b := make([]byte, 0, 512)
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := unix.Read(fd, b[len(b):cap(b)])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, gone(&os.PathError{Op: "read", Path: path, Err: err})
		}
		if n == 0 {
			return b, nil
		}
		b = b[:len(b)+n]
	}
}

// ReadDirNames lists a /proc directory (/proc/PID/fd, /proc/PID/task),
// opened as Open opens it.
func ReadDirNames(dir string) ([]string, error) {
	f, err := Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, gone(err)
	}
	return names, nil
}

// Read sizes for /proc text files, which the kernel generates per read
// call: a few large reads are several times faster than the growing small
// ones of os.ReadFile on big files (smaps of 10,000 VMAs is 7 MB), and a
// small buffer is enough for the small ones.
const (
	smallRead = 16 << 10
	largeRead = 256 << 10
)

// readParsed streams path through parse with a small read buffer.
func readParsed[T any](path string, parse func(io.Reader) (T, error)) (T, error) {
	return readParsedSize(path, smallRead, parse)
}

// readParsedAnySize parses a /proc file that is usually small but may be
// very large (maps of a process with thousands of mappings): whole from
// a buffer on the stack if it fits, else read again through large reads
// (not for smaps, which the kernel makes by walking page tables).
func readParsedAnySize[T any](path string, parse func(io.Reader) (T, error)) (T, error) {
	if v, fits, err := parseSmall(path, parse); err != nil || fits {
		return v, err
	}
	return readParsedSize(path, largeRead, parse)
}

// parseSmall reads path whole into a buffer on the stack, without an
// *os.File and a bufio.Reader, and parses it; fits is false when the
// file may be longer than the buffer (and nothing was parsed).
func parseSmall[T any](path string, parse func(io.Reader) (T, error)) (v T, fits bool, err error) {
	var buf [smallRead]byte
	text, fits, err := readSmall(path, buf[:])
	if err != nil || !fits {
		return v, false, err
	}
	if v, err = parse(strings.NewReader(text)); err != nil {
		var zero T
		return zero, true, fmt.Errorf("%s: %w", path, err)
	}
	return v, true, nil
}

// readParsedSize streams path through parse, reading size bytes at a
// time, and prefixes parse errors with the path. A read error is reported
// as such (with the path), not as a format error of the truncated text.
// With a small size, a file that fits smallRead is read whole first.
func readParsedSize[T any](path string, size int, parse func(io.Reader) (T, error)) (T, error) {
	var zero T
	if size <= smallRead {
		// A dump reads a few small files for every thread.
		if v, fits, err := parseSmall(path, parse); err != nil || fits {
			return v, err
		}
	}
	f, err := Open(path)
	if err != nil {
		return zero, err
	}
	defer f.Close()
	r := &readErr{r: bufio.NewReaderSize(f, size)}
	v, err := parse(r)
	if r.err != nil {
		return zero, gone(fmt.Errorf("read %s: %w", path, r.err))
	}
	if err != nil {
		return zero, fmt.Errorf("%s: %w", path, err)
	}
	return v, nil
}

// readSmall reads path into buf with one open, read and close, and
// returns its text; fits is false, and text empty, when the file may
// hold more than buf.
func readSmall(path string, buf []byte) (text string, fits bool, err error) {
	return readSmallAt(unix.AT_FDCWD, path, path, buf, false)
}

// readSmallAt is readSmall of name relative to the directory dir; path
// names the file in errors. With whole, a read shorter than asked ends the
// file: true of a seq_file read into a buffer of at most a page, which
// the kernel fills to the end of the text or of the buffer, and it spares
// the read that would return 0.
func readSmallAt(dir int, name, path string, buf []byte, whole bool) (text string, fits bool, err error) {
	fd, err := unix.Openat(dir, name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", false, gone(&os.PathError{Op: "open", Path: path, Err: err})
	}
	defer unix.Close(fd)
	n := 0
	for n < len(buf) {
		m, err := unix.Read(fd, buf[n:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return "", false, gone(fmt.Errorf("read %s: %w", path, err))
		}
		if m == 0 {
			break
		}
		n += m
		if whole && n < len(buf) {
			break
		}
	}
	if n == len(buf) {
		return "", false, nil
	}
	return string(buf[:n]), true, nil
}

// readErr remembers the first read error other than EOF.
type readErr struct {
	r   io.Reader
	err error
}

// Read reads from the file, noting the first real error.
func (e *readErr) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF && e.err == nil {
		e.err = err
	}
	return n, err
}

// eachLine calls fn with each line of r (without its newline), and
// prefixes any error with the 1-based line number.
func eachLine(r io.Reader, fn func(line string) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 512), maxLine)
	n := 0
	for sc.Scan() {
		n++
		if err := fn(sc.Text()); err != nil {
			return fmt.Errorf("line %d: %w", n, err)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("line %d: %w", n+1, err)
	}
	return nil
}

// cutKey splits a "Key: value" line at its first colon and trims the
// value. ok is false when there is no colon or the key is empty or holds
// whitespace, which is how a mapping header differs from a smaps field.
func cutKey(line string) (key, value string, ok bool) {
	key, value, ok = strings.Cut(line, ":")
	if !ok || key == "" || strings.ContainsAny(key, " \t") {
		return "", "", false
	}
	return key, strings.TrimSpace(value), true
}

// parseInts parses whitespace-separated decimal numbers, as in
// "task/TID/children" or the NSpid line of status.
func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Fields(s) {
		n, err := strconv.Atoi(f)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}
