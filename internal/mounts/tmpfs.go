package mounts

// The contents of tmpfs mounts, as gzipped tars made and unpacked by
// tar(1), with options that keep owners, modes, hard links and sparse
// files (CRIU's).

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/mnt"
	"golang.org/x/sys/unix"

	"amber/internal/image"
)

// tarCreate are tar's arguments to archive the directory open at fd 3.
// The POSIX format keeps modification times to the nanosecond, which a
// restore checks the files the tree has open against; tar(1) reads it
// as well as GNU's.
var tarCreate = []string{"--create", "--format=posix", "--gzip", "--no-unquote", "--no-wildcards", "--one-file-system",
	"--check-links", "--preserve-permissions", "--sparse", "--numeric-owner", "--directory", "/proc/self/fd/3", "."}

// tarExtract are tar's arguments to unpack into the directory open at
// fd 3.
var tarExtract = []string{"--extract", "--gzip", "--no-unquote", "--no-wildcards", "--preserve-permissions",
	"--numeric-owner", "--directory", "/proc/self/fd/3"}

// dumpTmpfs writes the contents of the tmpfs e, a mount of pid's
// namespace, into tmpfs-dev-DEV.tar.gz.img.
func dumpTmpfs(dir image.Dir, pid int, e *mnt.MntEntry) error {
	var d *os.File
	err := onThread(pid, nil, func() error {
		var err error
		d, err = openMountRoot(e.GetMountpoint(), e)
		return err
	})
	if err != nil {
		return err
	}
	defer d.Close()
	var out, errs bytes.Buffer
	cmd := exec.Command("tar", tarCreate...)
	cmd.ExtraFiles, cmd.Stdout, cmd.Stderr = []*os.File{d}, &out, &errs
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("tmpfs at %s: tar: %w: %s", e.GetMountpoint(), err, bytes.TrimSpace(errs.Bytes()))
	}
	return dir.TmpfsPath(e.GetRootDev()).WriteFile(out.Bytes())
}

// openMountRoot opens a copy of the mount e at at, without the mounts
// under it (open_tree's clone, not recursive): tar then sees files that
// mounts of the namespace hide. at must be the root of e, not something
// mounted over it. The caller is in e's mount namespace: a mount of
// another cannot be cloned.
func openMountRoot(at string, e *mnt.MntEntry) (*os.File, error) {
	fd, err := unix.OpenTree(unix.AT_FDCWD, at, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("mount %d at %s: %w", e.GetMntId(), e.GetMountpoint(), err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("mount %d at %s: %w", e.GetMntId(), e.GetMountpoint(), err)
	}
	if dev := kdev(unix.Major(st.Dev), unix.Minor(st.Dev)); dev != e.GetRootDev() {
		unix.Close(fd)
		return nil, fmt.Errorf("mount %d at %s: another mount hides it (device %#x there, want %#x)", e.GetMntId(), e.GetMountpoint(), dev, e.GetRootDev())
	}
	return os.NewFile(uintptr(fd), at), nil
}

// restoreTmpfs unpacks tmpfs-dev-DEV.tar.gz.img into d, the root of a
// new tmpfs, if the images have it (a tmpfs CRIU found empty may have
// none).
func restoreTmpfs(dir image.Dir, d *os.File, e *mnt.MntEntry) error {
	p := dir.TmpfsPath(e.GetRootDev())
	f, err := p.Open()
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	var errs bytes.Buffer
	cmd := exec.Command("tar", tarExtract...)
	cmd.ExtraFiles, cmd.Stdin, cmd.Stderr = []*os.File{d}, f, &errs
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s into tmpfs at %s: tar: %w: %s", p, e.GetMountpoint(), err, bytes.TrimSpace(errs.Bytes()))
	}
	return nil
}
