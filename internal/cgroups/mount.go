package cgroups

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// mounts are amber's own mounts of the hierarchies it works in, made
// with fsopen and fsmount and attached nowhere: a v1 mount with the
// controllers (or name) of an existing hierarchy is that hierarchy.
type mounts struct {
	fds  map[string]int // by hierarchy name
	yard string         // --cgroup-yard: the caller's mounts, "" for amber's own
}

func newMounts(yard string) *mounts { return &mounts{fds: map[string]int{}, yard: yard} }

// path is the path through amber's mount of hierarchy name (or the
// yard's) of the cgroup at rel, a path from the hierarchy's root.
func (m *mounts) path(name, rel string) (string, error) {
	fd, ok := m.fds[name]
	if !ok {
		var err error
		if m.yard != "" {
			if fd, err = openYard(m.yard, name); err != nil {
				return "", err
			}
		} else if fd, err = mountHierarchy(name); err != nil {
			return "", fmt.Errorf("cgroup hierarchy %q: %w", displayName(name), err)
		}
		m.fds[name] = fd
	}
	return fmt.Sprintf("/proc/self/fd/%d%s", fd, strings.TrimSuffix(rel, "/")), nil
}

// close unmounts (closes) every mount made.
func (m *mounts) close() {
	for name, fd := range m.fds {
		unix.Close(fd)
		delete(m.fds, name)
	}
}

// mountHierarchy mounts hierarchy name and returns the mount's
// descriptor.
func mountHierarchy(name string) (int, error) {
	fstype := "cgroup"
	if name == "" {
		fstype = "cgroup2"
	}
	fs, err := unix.Fsopen(fstype, unix.FSOPEN_CLOEXEC)
	if err != nil {
		return -1, fmt.Errorf("fsopen %s: %w", fstype, err)
	}
	defer unix.Close(fs)
	if err := configure(fs, name); err != nil {
		return -1, err
	}
	if err := unix.FsconfigCreate(fs); err != nil {
		return -1, fmt.Errorf("create the %s file system: %w", fstype, err)
	}
	fd, err := unix.Fsmount(fs, unix.FSMOUNT_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("fsmount %s: %w", fstype, err)
	}
	return fd, nil
}

// configure gives a v1 mount its controllers, or its name.
func configure(fs int, name string) error {
	if name == "" {
		return nil
	}
	for _, c := range cnames(name) {
		var err error
		if n, ok := strings.CutPrefix(c, "name="); ok {
			err = errors.Join(unix.FsconfigSetFlag(fs, "none"), unix.FsconfigSetString(fs, "name", n))
		} else {
			err = unix.FsconfigSetFlag(fs, c)
		}
		if err != nil {
			return fmt.Errorf("cgroup option %s: %w", c, err)
		}
	}
	return nil
}

// displayName names a hierarchy in messages.
func displayName(name string) string {
	if name == "" {
		return "unified (v2)"
	}
	return name
}
