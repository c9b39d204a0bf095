package proc

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Lock is one file lock as /proc/locks and the "lock:" lines of
// /proc/PID/fdinfo/FD show it (the kernel's lock_get_status):
//
//	1: POSIX  ADVISORY  WRITE 11837 fe:00:10355014 10 14
//	2: -> FLOCK  ADVISORY  WRITE 11840 fe:00:10355013 0 EOF
type Lock struct {
	Kind string // POSIX, FLOCK, OFDLCK, LEASE, or another the kernel adds
	Mode string // ADVISORY; a lease's ACTIVE, BREAKING or BREAKER
	Type string // READ, WRITE or UNLCK
	// Pid is the process that took the lock (flock, POSIX) or lease,
	// in the reader's PID namespace; -1 for OFD locks.
	Pid int
	Dev uint64 // device of the file, unix.Mkdev(major, minor)
	Ino uint64
	// Start and End are the first and last byte locked; End is -1 for a
	// lock to the end of the file (and beyond), "EOF" in the text.
	Start, End int64
	// Blocked marks a waiter ("->"): a request for the lock before it,
	// not a lock held.
	Blocked bool
}

// ToEOF is Lock.End of a lock to the end of the file.
const ToEOF = -1

// ParseLock parses one lock line of /proc/locks, or the text after
// "lock:" of a fdinfo line.
func ParseLock(line string) (Lock, error) {
	f := strings.Fields(line)
	var l Lock
	if len(f) > 1 && f[1] == "->" {
		l.Blocked = true
		f = append(f[:1], f[2:]...)
	}
	if len(f) != 8 || !strings.HasSuffix(f[0], ":") {
		return Lock{}, fmt.Errorf("lock %q: want 8 fields", line)
	}
	l.Kind, l.Mode, l.Type = f[1], f[2], f[3]
	var err error
	if l.Pid, err = strconv.Atoi(f[4]); err != nil {
		return Lock{}, fmt.Errorf("lock %q: pid: %w", line, err)
	}
	if l.Dev, l.Ino, err = parseDevIno(f[5]); err != nil {
		return Lock{}, fmt.Errorf("lock %q: %w", line, err)
	}
	if l.Start, err = strconv.ParseInt(f[6], 10, 64); err != nil {
		return Lock{}, fmt.Errorf("lock %q: start: %w", line, err)
	}
	l.End = ToEOF
	if f[7] != "EOF" {
		if l.End, err = strconv.ParseInt(f[7], 10, 64); err != nil || l.End < l.Start {
			return Lock{}, fmt.Errorf("lock %q: bad end %q", line, f[7])
		}
	}
	return l, nil
}

// parseDevIno parses "MAJ:MIN:INO", the device numbers in hex.
func parseDevIno(s string) (dev, ino uint64, err error) {
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return 0, 0, fmt.Errorf("file %q: want MAJOR:MINOR:INODE", s)
	}
	major, err1 := strconv.ParseUint(parts[0], 16, 32)
	minor, err2 := strconv.ParseUint(parts[1], 16, 32)
	ino, err3 := strconv.ParseUint(parts[2], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return 0, 0, fmt.Errorf("file %q: bad numbers", s)
	}
	return unix.Mkdev(uint32(major), uint32(minor)), ino, nil
}

// Locks returns the locks of the "lock:" lines of fi: the locks taken
// through the descriptor's open file (flock, OFD; POSIX ones only of the
// process whose fdinfo it is).
func (fi FdInfo) Locks() ([]Lock, error) {
	var out []Lock
	for _, line := range fi.ExtraLines {
		rest, ok := strings.CutPrefix(line, "lock:")
		if !ok {
			continue
		}
		// A kernel before 4.19 printed an empty line for a lock whose
		// owner the reader's PID namespace cannot see.
		if strings.TrimSpace(rest) == "" {
			continue
		}
		l, err := ParseLock(rest)
		if err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	return out, nil
}

// ReadLocks reads /proc/locks: every lock of the system, and the
// requests waiting for them. Lines it cannot parse are left out: they
// are other processes' business, and a dump learns its own locks from
// fdinfo.
func ReadLocks() ([]Lock, error) {
	f, err := os.Open("/proc/locks")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Lock
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if l, err := ParseLock(sc.Text()); err == nil {
			out = append(out, l)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("/proc/locks: %w", err)
	}
	return out, nil
}
