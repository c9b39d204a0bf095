package restore

// The calls of a plan that amber makes itself (plan.Builder.Privileged):
// those a task in a user namespace of its own is not allowed, made as
// root of the initial namespace between the task's calls before and
// after them.

import (
	"bytes"
	"fmt"
	"path"
	"unsafe"

	"golang.org/x/sys/unix"

	"amber/internal/compel"
	"amber/internal/idmap"
	"amber/internal/plan"
	"amber/internal/proc"
)

// noID is the -1 of chown's ids: leave it as it is.
const noID = ^uint32(0)

// runByAmber makes c, a call of prog that the plan gave to amber, for
// task: on amber's copy of the task's descriptor, or on the path in the
// task's root; the ids of a chown are the images' (users' view) and
// become amber's.
func runByAmber(task *compel.Task, prog *plan.Program, c plan.Call, users *idmap.Pair) error {
	switch c.Nr {
	case unix.SYS_SETSOCKOPT:
		val, err := progBytes(prog, c.Args[3], c.Args[4])
		if err != nil {
			return err
		}
		return onTaskFd(task.Pid, int(c.Args[0]), func(fd int) error {
			_, _, e := unix.Syscall6(unix.SYS_SETSOCKOPT, uintptr(fd), uintptr(c.Args[1]), uintptr(c.Args[2]),
				uintptr(unsafe.Pointer(&val[0])), uintptr(len(val)), 0)
			return errnoErr(e)
		})
	case unix.SYS_FCHOWN:
		uid, gid, err := outerOwner(users, c.Args[1], c.Args[2])
		if err != nil {
			return err
		}
		return onTaskFd(task.Pid, int(c.Args[0]), func(fd int) error { return unix.Fchown(fd, uid, gid) })
	case unix.SYS_FCHOWNAT:
		if int(int32(c.Args[0])) != unix.AT_FDCWD || c.Args[4] != unix.AT_SYMLINK_NOFOLLOW {
			break
		}
		p, err := progString(prog, c.Args[1])
		if err != nil {
			return err
		}
		uid, gid, err := outerOwner(users, c.Args[2], c.Args[3])
		if err != nil {
			return err
		}
		return chownInTask(task.Pid, p, uid, gid)
	}
	return fmt.Errorf("internal error: amber does not make %s calls for a task", plan.SyscallName(c.Nr))
}

// onTaskFd runs f on amber's copy of descriptor fd of process pid (a
// leader: the calls amber makes are in the sections the leader runs).
func onTaskFd(pid, fd int, f func(fd int) error) error {
	mine, err := proc.CopyFd(pid, fd)
	if err != nil {
		return err
	}
	defer unix.Close(mine)
	return f(mine)
}

// chownInTask gives p, an absolute path as task pid sees it, the owner
// uid:gid, not following a symbolic link at its end; the path resolves
// in the task's root, never out of it.
func chownInTask(pid int, p string, uid, gid int) error {
	if !path.IsAbs(p) {
		return fmt.Errorf("%q: amber gives owners to absolute paths only, for a task in a user namespace of its own", p)
	}
	root, err := unix.Open(fmt.Sprintf("/proc/%d/root", pid), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(root)
	fd, err := unix.Openat2(root, p, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return fmt.Errorf("open %s in the root of pid %d: %w", p, pid, err)
	}
	defer unix.Close(fd)
	return unix.Fchownat(fd, "", uid, gid, unix.AT_EMPTY_PATH)
}

// outerOwner turns the ids of a planned chown (the images', users'
// view; -1 left as it is) into amber's.
func outerOwner(users *idmap.Pair, u, g uint64) (uid, gid int, err error) {
	ou, og := uint32(u), uint32(g)
	if ou != noID {
		if ou, err = users.OuterUid(ou); err != nil {
			return 0, 0, err
		}
	}
	if og != noID {
		if og, err = users.OuterGid(og); err != nil {
			return 0, 0, err
		}
	}
	return int(int32(ou)), int(int32(og)), nil
}

// progBytes is the n bytes at addr of prog's scratch area.
func progBytes(prog *plan.Program, addr, n uint64) ([]byte, error) {
	if addr < prog.Base || addr-prog.Base+n > uint64(len(prog.Image)) || n == 0 {
		return nil, fmt.Errorf("internal error: %d bytes at %#x are not in the scratch area", n, addr)
	}
	off := addr - prog.Base
	return prog.Image[off : off+n], nil
}

// progString is the NUL-terminated string at addr of prog's scratch area.
func progString(prog *plan.Program, addr uint64) (string, error) {
	if addr < prog.Base || addr-prog.Base >= uint64(len(prog.Image)) {
		return "", fmt.Errorf("internal error: string at %#x is not in the scratch area", addr)
	}
	b := prog.Image[addr-prog.Base:]
	n := bytes.IndexByte(b, 0)
	if n < 0 {
		return "", fmt.Errorf("internal error: string at %#x is not terminated", addr)
	}
	return string(b[:n]), nil
}

func errnoErr(e unix.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}
