package cgroups

// The cgroup yard (--cgroup-yard): hierarchies mounted by the caller
// under one directory, used in place of amber's own mounts, as CRIU
// does. Each hierarchy is the yard's entry named as CRIU names it
// (yardDir); amber checks it is the root of a mount of that hierarchy
// before using it.

import (
	"bufio"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// yardDir is the name of hierarchy name's directory in a yard, CRIU's:
// the controllers as /proc/PID/cgroup lists them, a named hierarchy
// without "name=" ("systemd"), cgroup v2 "unified".
func yardDir(name string) string {
	var parts []string
	for _, c := range cnames(name) {
		c = strings.TrimPrefix(c, "name=")
		if c == "" {
			c = "unified"
		}
		parts = append(parts, c)
	}
	return strings.Join(parts, ",")
}

// openYard opens hierarchy name's directory in yard, without following
// a symbolic link below yard, and checks it is the root of a mount of
// that hierarchy.
func openYard(yard, name string) (int, error) {
	path := yard + "/" + yardDir(name)
	dir, err := unix.Open(yard, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("cgroup yard %s: %w", yard, err)
	}
	defer unix.Close(dir)
	fd, err := unix.Openat2(dir, yardDir(name), &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return -1, fmt.Errorf("cgroup yard: %s for hierarchy %s: %w", path, displayName(name), err)
	}
	if err := checkYard(fd, name); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("cgroup yard: %s is not hierarchy %s: %w", path, displayName(name), err)
	}
	return fd, nil
}

// checkYard tells whether fd is the root of a mount of hierarchy name:
// a cgroup file system of the right version, mounted whole, whose
// superblock has the hierarchy's controllers or name.
func checkYard(fd int, name string) error {
	var fs unix.Statfs_t
	if err := unix.Fstatfs(fd, &fs); err != nil {
		return fmt.Errorf("fstatfs: %w", err)
	}
	want, kind := int64(unix.CGROUP_SUPER_MAGIC), "cgroup v1"
	if name == "" {
		want, kind = unix.CGROUP2_SUPER_MAGIC, "cgroup v2"
	}
	if int64(fs.Type) != want {
		return fmt.Errorf("not a %s file system (type %#x)", kind, fs.Type)
	}
	var st unix.Statx_t
	if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH, unix.STATX_MNT_ID, &st); err != nil {
		return fmt.Errorf("statx: %w", err)
	}
	if st.Attributes_mask&unix.STATX_ATTR_MOUNT_ROOT != 0 && st.Attributes&unix.STATX_ATTR_MOUNT_ROOT == 0 {
		return fmt.Errorf("not a mount point (a directory inside a %s mount)", kind)
	}
	root, super, err := mountOf(st.Mnt_id)
	if err != nil {
		return err
	}
	if root != "/" {
		return fmt.Errorf("a mount of cgroup %s, not of the hierarchy's root", root)
	}
	if name == "" {
		return nil
	}
	opts := strings.Split(super, ",")
	for _, c := range cnames(name) {
		if !slices.Contains(opts, c) {
			return fmt.Errorf("its options %q lack %s", super, c)
		}
	}
	return nil
}

// mountOf reads the root and superblock options of mount id in
// /proc/self/mountinfo.
func mountOf(id uint64) (root, super string, err error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	want := strconv.FormatUint(id, 10)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 || fields[0] != want {
			continue
		}
		return fields[3], fields[len(fields)-1], nil
	}
	if err := sc.Err(); err != nil {
		return "", "", fmt.Errorf("/proc/self/mountinfo: %w", err)
	}
	return "", "", fmt.Errorf("mount %d not in /proc/self/mountinfo", id)
}
