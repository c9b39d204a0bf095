package proc

import (
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// FdDir is a task's /proc/PID/fd and /proc/PID/fdinfo, opened once: a
// dump reads the link and fdinfo of every descriptor, and going through
// these directories spares a walk of /proc and /proc/PID (with its
// revalidation) for each of thousands of descriptors.
type FdDir struct {
	pid      int
	fd, info int // the opened directories
}

// OpenFdDir opens pid's fd and fdinfo directories.
func OpenFdDir(pid int) (*FdDir, error) {
	fd, err := openDir(pidPath(pid, "fd"))
	if err != nil {
		return nil, err
	}
	info, err := openDir(pidPath(pid, "fdinfo"))
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	return &FdDir{pid: pid, fd: fd, info: info}, nil
}

func openDir(path string) (int, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, gone(&os.PathError{Op: "open", Path: path, Err: err})
	}
	return fd, nil
}

// Pid is the task whose directories these are.
func (d *FdDir) Pid() int { return d.pid }

// Close closes both directories.
func (d *FdDir) Close() error {
	err := unix.Close(d.fd)
	if e := unix.Close(d.info); err == nil {
		err = e
	}
	return err
}

// Link is what FdPath says of fd: readlink of /proc/PID/fd/FD.
func (d *FdDir) Link(fd int) (string, error) {
	name := strconv.Itoa(fd)
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(d.fd, name, buf)
		if err != nil {
			return "", gone(&os.PathError{Op: "readlink", Path: pidPath(d.pid, "fd/"+name), Err: err})
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
}

// Info is what ReadFdinfo says of fd.
func (d *FdDir) Info(fd int) (FdInfo, error) {
	name := strconv.Itoa(fd)
	return readFdinfoAt(d.info, name, pidPath(d.pid, "fdinfo/"+name))
}
