package image

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Files amber writes beside the images, by a path the user gave: the log
// (-o) and the pidfile (--pidfile). The directory part of the path is the
// user's choice, symbolic links and all; the file itself is never
// reached through a symbolic link, so that whoever can write that
// directory (the images directory, where a relative -o lands, or /tmp)
// cannot make amber, often root, write another file by planting one.

// CreateLog creates the log file at path for appending. A regular file
// already there (an old log) is removed and the log created anew,
// exclusively; a character device (/dev/null, a terminal) is opened as
// it is; anything else, a symbolic link above all, is refused.
func CreateLog(path string) (*os.File, error) {
	dir, name, err := openParent(path)
	if err != nil {
		return nil, err
	}
	defer unix.Close(dir)
	for range 3 {
		fd, err := openBeneath(dir, name, unix.O_WRONLY|unix.O_APPEND|unix.O_CREAT|unix.O_EXCL, 0o600)
		if err == nil {
			return os.NewFile(uintptr(fd), path), nil
		}
		if !errors.Is(err, unix.EEXIST) {
			return nil, outputError(path, err)
		}
		var st unix.Stat_t
		if err := unix.Fstatat(dir, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			continue // gone again: try to create it
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			if err := unix.Unlinkat(dir, name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
				return nil, &os.PathError{Op: "remove the old log", Path: path, Err: err}
			}
		case unix.S_IFCHR:
			fd, err := openBeneath(dir, name, unix.O_WRONLY|unix.O_APPEND, 0)
			if err != nil {
				return nil, outputError(path, err)
			}
			return os.NewFile(uintptr(fd), path), nil
		default:
			return nil, outputError(path, refusedKind(st.Mode))
		}
	}
	return nil, fmt.Errorf("%s: replaced again and again while amber created it", path)
}

// CreateNew creates the file at path exclusively (O_EXCL, as CRIU
// creates its pidfile): anything already there, a symbolic link too, is
// refused.
func CreateNew(path string) (*os.File, error) {
	dir, name, err := openParent(path)
	if err != nil {
		return nil, err
	}
	defer unix.Close(dir)
	fd, err := openBeneath(dir, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, 0o600)
	if err != nil {
		return nil, outputError(path, err)
	}
	return os.NewFile(uintptr(fd), path), nil
}

// openParent opens the directory of path (following symbolic links: the
// user chose it) and returns it with the file's name in it.
func openParent(path string) (int, string, error) {
	name := filepath.Base(path)
	if name == "/" || name == "." || name == ".." {
		return -1, "", fmt.Errorf("%s: not a file name", path)
	}
	dir, err := unix.Open(filepath.Dir(path), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, "", &os.PathError{Op: "open", Path: filepath.Dir(path), Err: err}
	}
	return dir, name, nil
}

// errSymlink stands for a symbolic link where amber creates a file.
var errSymlink = errors.New("is a symbolic link: amber does not write through one")

func refusedKind(mode uint32) error {
	switch mode & unix.S_IFMT {
	case unix.S_IFLNK:
		return errSymlink
	case unix.S_IFDIR:
		return unix.EISDIR
	}
	return fmt.Errorf("not a regular file (mode %#o)", mode)
}

// outputError names path in err, spelling out a refused symbolic link.
func outputError(path string, err error) error {
	if errors.Is(err, unix.ELOOP) {
		err = errSymlink
	}
	return &os.PathError{Op: "create", Path: path, Err: err}
}
