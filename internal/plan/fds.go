package plan

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// AtFdcwd is AT_FDCWD (-100) as a register value, for the *at calls
// a plan makes with paths.
const AtFdcwd = ^uint64(99)

// Inherit tells the builder which descriptors the task has when its plan
// starts (those of the parent it was forked from).
func (b *Builder) Inherit(fds []int) {
	b.fds = fdTable{}
	for _, fd := range fds {
		b.fds.set(fd)
	}
}

// Fds lists the descriptors the task has at this point of the plan.
func (b *Builder) Fds() []int {
	return b.fds.list()
}

// CloseRange plans closing every descriptor from first to last.
func (b *Builder) CloseRange(first, last int) {
	b.Call(fmt.Sprintf("close fds %d-%d", first, last), unix.SYS_CLOSE_RANGE, uint64(first), uint64(uint32(last)), 0)
	b.fds.clearRange(first, last)
}

// CloseAll plans closing every descriptor the task has.
func (b *Builder) CloseAll() {
	b.Call("close inherited descriptors", unix.SYS_CLOSE_RANGE, 0, ^uint64(0)>>32, 0)
	b.fds = fdTable{}
}

// CloseAllBut plans closing every descriptor the task has but keep.
func (b *Builder) CloseAllBut(keep int) {
	if keep > 0 {
		b.CloseRange(0, keep-1)
	}
	b.Call(fmt.Sprintf("close fds above %d", keep), unix.SYS_CLOSE_RANGE, uint64(keep+1), ^uint64(0)>>32, 0)
	b.Inherit([]int{keep})
}

// Open plans openat(AT_FDCWD, path, flags, mode) and returns the
// descriptor it will get.
func (b *Builder) Open(what, path string, flags int, mode uint32) int {
	fd := b.fds.lowest()
	b.Call(fmt.Sprintf("open %s (%s) as fd %d", path, what, fd), unix.SYS_OPENAT,
		AtFdcwd, b.String(path), uint64(flags), uint64(mode))
	b.fds.set(fd)
	return fd
}

// OpenAt plans openat(dir, path, flags, mode), path relative to the
// directory the task holds at dir, and returns the descriptor it will
// get.
func (b *Builder) OpenAt(what string, dir int, path string, flags int, mode uint32) int {
	fd := b.fds.lowest()
	b.Call(fmt.Sprintf("open %s under fd %d (%s) as fd %d", path, dir, what, fd), unix.SYS_OPENAT,
		uint64(dir), b.String(path), uint64(flags), uint64(mode))
	b.fds.set(fd)
	return fd
}

// Take records a descriptor created by a planned call (pipe2, socket,
// pidfd_getfd) and returns its number. Calls that create one descriptor
// use Next first to learn what it will be.
func (b *Builder) Take() int {
	fd := b.fds.lowest()
	b.fds.set(fd)
	return fd
}

// Next is the descriptor the next creating call will get.
func (b *Builder) Next() int { return b.fds.lowest() }

// Close plans close(fd).
func (b *Builder) Close(fd int) {
	b.Call(fmt.Sprintf("close fd %d", fd), unix.SYS_CLOSE, uint64(fd))
	b.fds.clear(fd)
}

// Move plans making descriptor from appear as to (dup3, then close from),
// with O_CLOEXEC if cloexec. If to is taken, it is replaced.
func (b *Builder) Move(from, to int, cloexec bool) {
	if from == to {
		if cloexec {
			b.Call(fmt.Sprintf("set FD_CLOEXEC on fd %d", to), unix.SYS_FCNTL, uint64(to), unix.F_SETFD, unix.FD_CLOEXEC)
		}
		return
	}
	var flags uint64
	if cloexec {
		flags = unix.O_CLOEXEC
	}
	b.Call(fmt.Sprintf("dup fd %d to %d", from, to), unix.SYS_DUP3, uint64(from), uint64(to), flags)
	b.fds.set(to)
	b.Close(from)
}

// Used reports whether the plan has fd open at this point.
func (b *Builder) Used(fd int) bool { return b.fds.has(fd) }

// Mark records that a planned call (dup3 into a chosen number) made fd.
func (b *Builder) Mark(fd int) { b.fds.set(fd) }

// CopyAbove plans duplicating fd to the lowest free number at or above
// min (fcntl F_DUPFD) and returns the new number; fd stays open.
func (b *Builder) CopyAbove(fd, min int) int {
	to := b.fds.lowestFrom(min)
	b.Call(fmt.Sprintf("copy fd %d above %d", fd, min), unix.SYS_FCNTL, uint64(fd), unix.F_DUPFD, uint64(min))
	b.fds.set(to)
	return to
}

// MoveAbove plans moving fd to the lowest free number at or above min
// (fcntl F_DUPFD), closing fd, and returns the new number.
func (b *Builder) MoveAbove(fd, min int) int {
	to := b.CopyAbove(fd, min)
	b.Close(fd)
	return to
}
