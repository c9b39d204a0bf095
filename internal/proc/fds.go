package proc

import (
	"fmt"
	"os"
	"slices"
	"strconv"

	"golang.org/x/sys/unix"
)

// Fds lists the open descriptor numbers of PID, sorted ascending (from
// /proc/PID/fd).
func Fds(pid int) ([]int, error) {
	return readDirInts(pidPath(pid, "fd"))
}

// FdPath is readlink /proc/PID/fd/FD: a path, or a description such as
// "pipe:[1234]" or "anon_inode:[eventfd]".
func FdPath(pid, fd int) (string, error) {
	s, err := os.Readlink(pidPath(pid, "fd/"+strconv.Itoa(fd)))
	return s, gone(err)
}

// FdsOf lists the descriptors of PID that open link (as FdPath reads
// it: "socket:[1234]"), sorted ascending.
func FdsOf(pid int, link string) ([]int, error) {
	fds, err := Fds(pid)
	if err != nil {
		return nil, err
	}
	var out []int
	for _, fd := range fds {
		if l, err := FdPath(pid, fd); err == nil && l == link {
			out = append(out, fd)
		}
	}
	return out, nil
}

// CopyFd copies descriptor fd of process pid into the caller
// (pidfd_getfd): the copy shares the open file, and is a bare
// descriptor, which no poller of Go's touches.
func CopyFd(pid, fd int) (int, error) {
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return -1, fmt.Errorf("pidfd_open pid %d: %w", pid, err)
	}
	defer unix.Close(pidfd)
	mine, err := unix.PidfdGetfd(pidfd, fd, 0)
	if err != nil {
		return -1, fmt.Errorf("pidfd_getfd fd %d of pid %d: %w", fd, pid, err)
	}
	return mine, nil
}

// Threads lists the TIDs of PID from /proc/PID/task, sorted ascending.
func Threads(pid int) ([]int, error) {
	return readDirInts(pidPath(pid, "task"))
}

// Children lists the children of every thread of PID
// (/proc/PID/task/*/children), sorted and deduplicated. A child belongs to
// the thread that forked it, so reading only the main thread's file would
// miss children of the others. The children files need
// CONFIG_PROC_CHILDREN and are only consistent while the tree is frozen.
func Children(pid int) ([]int, error) {
	tids, err := Threads(pid)
	if err != nil {
		return nil, err
	}
	var all []int
	for _, tid := range tids {
		path := taskPath(pid, tid, "children")
		b, err := ReadFile(path)
		if err != nil {
			return nil, err
		}
		kids, err := parseInts(string(b))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		all = append(all, kids...)
	}
	slices.Sort(all)
	return slices.Compact(all), nil
}

// readDirInts lists a directory whose entries are all decimal numbers.
func readDirInts(dir string) ([]int, error) {
	names, err := ReadDirNames(dir)
	if err != nil {
		return nil, err
	}
	nums := make([]int, 0, len(names))
	for _, name := range names {
		n, err := strconv.Atoi(name)
		if err != nil {
			return nil, fmt.Errorf("%s: entry %q: %w", dir, name, err)
		}
		nums = append(nums, n)
	}
	slices.Sort(nums)
	return nums, nil
}
