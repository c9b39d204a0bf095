package kerndat

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// probeMoveMountSetGroup tries move_mount(MOVE_MOUNT_SET_GROUP) (Linux
// 5.15), with which a restore puts a mount into the peer group of
// another (mounts.Groups), as CRIU's mount-v2 does: on a thread of its
// own in a private copy of amber's mount namespace, a shared tmpfs's
// group is given to a private bind of it. The thread is never handed
// back to Go, so the copy and its mounts go with it.
func probeMoveMountSetGroup() Status {
	dir, err := os.MkdirTemp("", "amber-kerndat-")
	if err != nil {
		return missing("probe directory: %w", err)
	}
	defer os.RemoveAll(dir)
	done := make(chan Status, 1)
	go func() {
		runtime.LockOSThread() // not unlocked: the thread ends with its namespace
		done <- setGroupIn(dir)
	}()
	return <-done
}

// setGroupIn makes, under dir in a new mount namespace of the calling
// thread, a shared tmpfs and a private bind of it, and moves the bind
// into the tmpfs's peer group.
func setGroupIn(dir string) Status {
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return missing("unshare(CLONE_NEWNS): %w", err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return missing("make the probe's mounts private: %w", err)
	}
	src, dst := filepath.Join(dir, "src"), filepath.Join(dir, "dst")
	for _, d := range []string{src, dst} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return missing("%w", err)
		}
	}
	steps := []struct {
		what string
		do   func() error
	}{
		{"mount tmpfs", func() error { return unix.Mount("amber-kerndat", src, "tmpfs", 0, "size=4k") }},
		{"make it shared", func() error { return unix.Mount("", src, "", unix.MS_SHARED, "") }},
		{"bind it", func() error { return unix.Mount(src, dst, "", unix.MS_BIND, "") }},
		{"make the bind private", func() error { return unix.Mount("", dst, "", unix.MS_PRIVATE, "") }},
		{"move_mount(MOVE_MOUNT_SET_GROUP)", func() error {
			return unix.MoveMount(unix.AT_FDCWD, src, unix.AT_FDCWD, dst, unix.MOVE_MOUNT_SET_GROUP)
		}},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			return missing("%s: %w", s.what, err)
		}
	}
	shared, err := sharedGroup(dst)
	if err != nil {
		return missing("%w", err)
	}
	if !shared {
		return missing("move_mount(MOVE_MOUNT_SET_GROUP) left %s private", dst)
	}
	return present()
}

// sharedGroup reports whether the mount at path is in a peer group, as
// this thread's mountinfo says.
func sharedGroup(path string) (bool, error) {
	b, err := os.ReadFile("/proc/thread-self/mountinfo")
	if err != nil {
		return false, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 6 && f[4] == path {
			for _, opt := range f[6:] {
				if opt == "-" {
					break
				}
				if strings.HasPrefix(opt, "shared:") {
					return true, nil
				}
			}
			return false, nil
		}
	}
	return false, fmt.Errorf("%s not in /proc/thread-self/mountinfo", path)
}
