package image

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// A dump into a directory that holds the images of an earlier dump would
// leave those of other PIDs beside the new ones (core-OLDPID.img, ...),
// and whoever reads the directory later could not tell them apart.
// RemoveStale removes, before a dump writes anything, every file whose
// name is one of the images amber or CRIU write: files of other names
// (logs, the user's own files) are left alone, as are directories.

// singleImages are the images CRIU and amber write once per dump, by
// name without ".img".
var singleImages = []string{
	"inventory", "pstree", "files", "reg-files", "ext-files", "ns-files",
	"eventfd", "eventpoll", "eventpoll-tfd", "signalfd", "inotify",
	"inotify-wd", "fanotify", "fanotify-mark", "unixsk", "inetsk",
	"packetsk", "netlinksk", "sk-queues", "remap-fpath", "pipes",
	"pipes-data", "fifo", "fifo-data", "tty", "tty-info", "tty-data",
	"tunfile", "timerfd", "irmap-cache", "cgroup", "seccomp", "memfd",
	"filelocks", "apparmor", "bpfmap-file", "bpfmap-data", "cpuinfo",
}

// idImages are the images written once per process, thread or object,
// named PREFIX-ID.img with a decimal or hexadecimal ID.
var idImages = []string{
	"core", "ids", "mm", "pagemap", "pagemap-shmem", "pages", "fdinfo",
	"fs", "creds", "utsns", "ipcns-var", "ipcns-shm", "ipcns-msg",
	"ipcns-sem", "mountpoints", "mnts", "netdev", "ifaddr", "route",
	"route6", "rule", "iptables", "ip6tables", "nftables", "netns",
	"netns-ct", "netns-exp", "sigacts", "itimers", "posix-timers",
	"rlimit", "signal-p", "signal-s", "ghost-file", "tcp-stream",
	"userns", "timens", "pidns", "cow", "amber-sent-pagemap",
}

// otherImages are files of a dump not named *.img (the parent link of an
// incremental dump among them).
var otherImages = []string{"stats-dump", "stats-restore", "amber-mtimes.txt", "amber-manifest.txt", "amber-track.txt", restartsName, ParentLink}

// IsDumpFile reports whether name is the name of a file a CRIU or amber
// dump writes in an images directory.
func IsDumpFile(name string) bool {
	for _, o := range otherImages {
		if name == o {
			return true
		}
	}
	if id, ok := strings.CutPrefix(name, "amber-mqueue-"); ok {
		id, ok = strings.CutSuffix(id, ".txt")
		return ok && isID(id)
	}
	if id, ok := strings.CutPrefix(name, "tmpfs-dev-"); ok {
		id, ok = strings.CutSuffix(id, ".tar.gz.img")
		return ok && isID(id)
	}
	base, ok := strings.CutSuffix(name, ".img")
	if !ok {
		return false
	}
	for _, s := range singleImages {
		if base == s {
			return true
		}
	}
	for _, p := range idImages {
		if id, ok := strings.CutPrefix(base, p+"-"); ok && isID(id) {
			return true
		}
	}
	return false
}

// isID reports whether s is a non-empty run of hexadecimal digits
// (decimal ids are too).
func isID(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// Names lists the names of the directory's entries, in no order.
func (d Dir) Names() ([]string, error) {
	dfd, err := d.fd()
	if err != nil {
		return nil, err
	}
	// A descriptor of its own: reading entries moves its offset.
	fd, err := unix.Openat(dfd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("images directory %s: %w", d.path, err)
	}
	f := os.NewFile(uintptr(fd), d.path)
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("images directory %s: %w", d.path, err)
	}
	return names, nil
}

// RemoveStale removes every file of the directory named as a dump's
// (IsDumpFile) and returns their names. A symbolic link is removed
// itself, never followed; a directory is left.
func (d Dir) RemoveStale() ([]string, error) {
	dfd, err := d.fd()
	if err != nil {
		return nil, err
	}
	names, err := d.Names()
	if err != nil {
		return nil, err
	}
	var removed []string
	for _, n := range names {
		if !IsDumpFile(n) {
			continue
		}
		err := unix.Unlinkat(dfd, n, 0)
		switch {
		case err == nil:
			removed = append(removed, n)
		case errors.Is(err, unix.EISDIR), errors.Is(err, unix.ENOENT):
		default:
			return removed, d.File(n).error("remove the stale image", err)
		}
	}
	return removed, nil
}
