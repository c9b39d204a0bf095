package image

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// Dir is an images directory, opened once. Every image is opened or
// created relative to that descriptor and never through a symbolic link
// (see Path), so that whoever can write the directory cannot make amber
// read or write another file by planting a link, and renaming or
// replacing the directory after it was opened changes nothing. The path
// the user gave may itself lead through symbolic links: that is their
// choice, made once, when the directory is opened.
//
// A Dir opened by OpenTrustedDir also refuses every image that a user
// other than root and the caller can write (trust.go).
type Dir struct {
	path     string   // as the user named it, for messages
	resolved string   // absolute and free of symbolic links, when opened
	f        *os.File // the directory; nil for a Dir that was never opened
	trust    *trust   // nil: every image is accepted
	contents *contents
}

// OpenDir opens the images directory at path.
func OpenDir(path string) (Dir, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return Dir{}, fmt.Errorf("images directory %s: %w", path, errors.Unwrap(err))
	}
	resolved, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(int(f.Fd())))
	if err != nil {
		f.Close()
		return Dir{}, fmt.Errorf("images directory %s: %w", path, err)
	}
	return Dir{path: path, resolved: resolved, f: f, contents: newContents()}, nil
}

// DirAt names the directory at path, an absolute path free of symbolic
// links, without opening it: its files have names and resolved paths (for
// a plan computed without a directory, as unit tests do) but cannot be
// opened.
func DirAt(path string) Dir { return Dir{path: path, resolved: path} }

// Close closes the directory; its Paths can no longer be opened.
func (d Dir) Close() error {
	if d.f == nil {
		return nil
	}
	d.contents.closePinned()
	return d.f.Close()
}

// String is the directory's path as the user named it.
func (d Dir) String() string { return d.path }

// Resolved is the directory's absolute path, free of symbolic links, as
// it was when it was opened.
func (d Dir) Resolved() string { return d.resolved }

// fd is the directory's descriptor, or an error for a Dir never opened.
func (d Dir) fd() (int, error) {
	if d.f == nil {
		return -1, fmt.Errorf("images directory %q: not open", d.path)
	}
	return int(d.f.Fd()), nil
}

// File names one file of the directory.
func (d Dir) File(name string) Path { return Path{dir: d, name: name} }

// CgroupPath is cgroup.img, the cgroups of the tree.
func (d Dir) CgroupPath() Path { return d.File("cgroup.img") }

// SeccompPath is seccomp.img, the seccomp filters of the tree.
func (d Dir) SeccompPath() Path { return d.File("seccomp.img") }

// FileLocksPath is filelocks.img, the file locks of the tree.
func (d Dir) FileLocksPath() Path { return d.File("filelocks.img") }

// InventoryPath is inventory.img.
func (d Dir) InventoryPath() Path { return d.File("inventory.img") }

// PstreePath is pstree.img.
func (d Dir) PstreePath() Path { return d.File("pstree.img") }

// FilesPath is files.img, every open file of the tree.
func (d Dir) FilesPath() Path { return d.File("files.img") }

// CorePath is core-TID.img, one per thread.
func (d Dir) CorePath(tid int) Path { return d.File(fmt.Sprintf("core-%d.img", tid)) }

// IDsPath is ids-PID.img.
func (d Dir) IDsPath(pid int) Path { return d.File(fmt.Sprintf("ids-%d.img", pid)) }

// MMPath is mm-PID.img.
func (d Dir) MMPath(pid int) Path { return d.File(fmt.Sprintf("mm-%d.img", pid)) }

// PagemapPath is pagemap-PID.img.
func (d Dir) PagemapPath(pid int) Path { return d.File(fmt.Sprintf("pagemap-%d.img", pid)) }

// SentPagemapPath is amber-sent-pagemap-PID.img, amber's record of the
// pages a dump to a page server sent for process pid (a pagemap image
// without pages image): a later dump on top reads it where the page
// server's pagemap is not at hand.
func (d Dir) SentPagemapPath(pid int) Path {
	return d.File(fmt.Sprintf("amber-sent-pagemap-%d.img", pid))
}

// PagesPath is pages-ID.img, raw page contents in pagemap order.
func (d Dir) PagesPath(id uint32) Path { return d.File(fmt.Sprintf("pages-%d.img", id)) }

// FdinfoPath is fdinfo-ID.img, the descriptor table with files_id ID.
func (d Dir) FdinfoPath(filesID uint32) Path { return d.File(fmt.Sprintf("fdinfo-%d.img", filesID)) }

// FSPath is fs-PID.img.
func (d Dir) FSPath(pid int) Path { return d.File(fmt.Sprintf("fs-%d.img", pid)) }

// StatsDumpPath is stats-dump.
func (d Dir) StatsDumpPath() Path { return d.File("stats-dump") }

// StatsRestorePath is stats-restore.
func (d Dir) StatsRestorePath() Path { return d.File("stats-restore") }

// ShmemPagemapPath is pagemap-shmem-SHMID.img, the pages of one shared
// memory object (anonymous shared memory, a memfd, a SysV segment).
func (d Dir) ShmemPagemapPath(shmid uint64) Path {
	return d.File(fmt.Sprintf("pagemap-shmem-%d.img", shmid))
}

// MemfdPath is memfd.img, the memfd inodes of the dump.
func (d Dir) MemfdPath() Path { return d.File("memfd.img") }

// IpcnsShmPath is ipcns-shm-ID.img, the SysV shared memory segments of
// the IPC namespace with that id.
func (d Dir) IpcnsShmPath(nsID uint32) Path { return d.File(fmt.Sprintf("ipcns-shm-%d.img", nsID)) }

// IpcnsSemPath is ipcns-sem-ID.img, the semaphore sets of IPC namespace
// nsID.
func (d Dir) IpcnsSemPath(nsID uint32) Path { return d.File(fmt.Sprintf("ipcns-sem-%d.img", nsID)) }

// IpcnsMsgPath is ipcns-msg-ID.img, the message queues of IPC namespace
// nsID.
func (d Dir) IpcnsMsgPath(nsID uint32) Path { return d.File(fmt.Sprintf("ipcns-msg-%d.img", nsID)) }

// MqueuePath is amber-mqueue-NSID.txt, the POSIX message queues of IPC
// namespace nsID (CRIU's format has no image for them).
func (d Dir) MqueuePath(nsID uint32) Path { return d.File(fmt.Sprintf("amber-mqueue-%d.txt", nsID)) }

// NetdevPath is netdev-ID.img, the links of network namespace nsID.
func (d Dir) NetdevPath(nsID uint32) Path { return d.File(fmt.Sprintf("netdev-%d.img", nsID)) }

// NetnsPath is netns-ID.img, the settings of network namespace nsID.
func (d Dir) NetnsPath(nsID uint32) Path { return d.File(fmt.Sprintf("netns-%d.img", nsID)) }

// IfaddrPath is ifaddr-ID.img, the addresses of network namespace nsID
// as iproute2's "ip addr save" writes them (no image header).
func (d Dir) IfaddrPath(nsID uint32) Path { return d.File(fmt.Sprintf("ifaddr-%d.img", nsID)) }

// RoutePath is route-ID.img, the IPv4 routes of network namespace nsID
// as "ip route save" writes them (no image header).
func (d Dir) RoutePath(nsID uint32) Path { return d.File(fmt.Sprintf("route-%d.img", nsID)) }

// Route6Path is route6-ID.img, the IPv6 routes of network namespace
// nsID as "ip -6 route save" writes them (no image header).
func (d Dir) Route6Path(nsID uint32) Path { return d.File(fmt.Sprintf("route6-%d.img", nsID)) }

// UsernsPath is userns-ID.img, the maps of user namespace nsID.
func (d Dir) UsernsPath(nsID uint32) Path { return d.File(fmt.Sprintf("userns-%d.img", nsID)) }

// UtsnsPath is utsns-ID.img, the names of UTS namespace nsID.
func (d Dir) UtsnsPath(nsID uint32) Path { return d.File(fmt.Sprintf("utsns-%d.img", nsID)) }

// TimensPath is timens-ID.img, the clocks of time namespace nsID.
func (d Dir) TimensPath(nsID uint32) Path { return d.File(fmt.Sprintf("timens-%d.img", nsID)) }

// MountpointsPath is mountpoints-ID.img, the mounts of mount namespace
// nsID.
func (d Dir) MountpointsPath(nsID uint32) Path {
	return d.File(fmt.Sprintf("mountpoints-%d.img", nsID))
}

// TmpfsPath is tmpfs-dev-DEV.tar.gz.img, the contents of the tmpfs whose
// device (the kernel's encoding, MntEntry.root_dev) is dev.
func (d Dir) TmpfsPath(dev uint32) Path { return d.File(fmt.Sprintf("tmpfs-dev-%d.tar.gz.img", dev)) }

// IpcVarPath is ipcns-var-ID.img, the settings of IPC namespace nsID.
func (d Dir) IpcVarPath(nsID uint32) Path { return d.File(fmt.Sprintf("ipcns-var-%d.img", nsID)) }

// TtyInfoPath is tty-info.img, the state of every terminal of the dump.
func (d Dir) TtyInfoPath() Path { return d.File("tty-info.img") }

// TtyDataPath is tty-data.img, the bytes queued in ptys.
func (d Dir) TtyDataPath() Path { return d.File("tty-data.img") }

// Path is one file of an images directory: the directory, opened once,
// and the file's name in it.
type Path struct {
	dir  Dir
	name string
}

// String is the file's path through the directory's path as the user
// named it, for messages.
func (p Path) String() string { return filepath.Join(p.dir.path, p.name) }

// Name is the file's name in the directory.
func (p Path) Name() string { return p.name }

// Resolved is the file's path through the directory's resolved path, for
// a process that must open the file by its path (a restored task opening
// its pages image): it leads through no symbolic link the user's path
// had, and a task opening it should refuse any with O_NOFOLLOW or
// RESOLVE_NO_SYMLINKS.
func (p Path) Resolved() string { return filepath.Join(p.dir.resolved, p.name) }

// TaskFile is how a restored task opens an image itself: the path and
// the flags of its open.
type TaskFile struct {
	Path  string
	Flags int
}

// ForTask is how a restored task opens the file for reading (its pages
// image): by the resolved path, through no symbolic link, or in a shared
// directory (trust.go) through amber's verified descriptor of it.
func (p Path) ForTask() TaskFile {
	if f := p.dir.contents.pinnedFile(p.name); f != nil && p.dir.trust.isShared() {
		return TaskFile{fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), f.Fd()), unix.O_RDONLY}
	}
	if via := p.dir.contents.taskPath(); via != "" {
		return TaskFile{via + "/" + p.name, unix.O_RDONLY | unix.O_NOFOLLOW}
	}
	return TaskFile{p.Resolved(), unix.O_RDONLY | unix.O_NOFOLLOW}
}

// TasksViaProc makes restored tasks open images (ForTask) through
// amber's descriptor of the directory, /proc/AMBER/fd/N/NAME, not by its
// path: tasks whose root is not amber's (a mount namespace of their
// own) reach amber's /proc, not the directory.
func (d Dir) TasksViaProc() {
	if d.f == nil {
		return
	}
	d.contents.mu.Lock()
	if d.contents.via == "" {
		d.contents.via = fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), d.f.Fd())
	}
	d.contents.mu.Unlock()
}

// taskPath is the path restored tasks open images through (via), ""
// for the directory's own; c may be nil (a Dir made by hand).
func (c *contents) taskPath() string {
	if c == nil {
		return ""
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.via
}

// TasksVia makes restored tasks open images through descriptor fd of
// process pid, a copy of amber's descriptor of the directory, whatever
// TasksViaProc says later: tasks in a user namespace of their own may
// not open amber's descriptors under /proc, but may those of a process
// in their namespace (amber's restore stub).
func (d Dir) TasksVia(pid, fd int) {
	d.contents.mu.Lock()
	d.contents.via = fmt.Sprintf("/proc/%d/fd/%d", pid, fd)
	d.contents.mu.Unlock()
}

// Fd is amber's descriptor of the directory, -1 if none is open.
func (d Dir) Fd() int {
	if d.f == nil {
		return -1
	}
	return int(d.f.Fd())
}

// Open opens the file for reading: never through a symbolic link, only a
// regular file, and, in a trusted directory, only one that nobody but
// root and the caller can write. In a shared directory, it opens the
// image the manifest verified, whatever is under its name now.
func (p Path) Open() (*os.File, error) {
	if !p.dir.trust.isShared() || p.name == ManifestName {
		return p.openByName()
	}
	pinned, err := p.pinned()
	if err != nil {
		return nil, err
	}
	// A new open file of the same inode, with its own offset.
	fd, err := unix.Open(fmt.Sprintf("/proc/self/fd/%d", pinned.Fd()), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, p.error("open", err)
	}
	return os.NewFile(uintptr(fd), p.String()), nil
}

// pinned is the verified descriptor of an image of a shared directory.
// Once the manifest is verified, an image it does not list does not
// exist: none did when it was checked.
func (p Path) pinned() (*os.File, error) {
	if f := p.dir.contents.pinnedFile(p.name); f != nil {
		return f, nil
	}
	if p.dir.contents.isVerified() {
		return nil, &os.PathError{Op: "open", Path: p.String(), Err: unix.ENOENT}
	}
	return nil, p.dir.trust.unverified(p.String(), "not verified against a manifest")
}

// openByName opens the file under its name now, with the checks of Open.
func (p Path) openByName() (*os.File, error) {
	dfd, err := p.dir.fd()
	if err != nil {
		return nil, err
	}
	// O_NONBLOCK: a FIFO planted under an image's name must not block
	// the open; it is refused below as not a regular file.
	fd, err := openBeneath(dfd, p.name, unix.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, p.error("open", err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, p.error("stat", err)
	}
	if err := p.check(&st); err != nil {
		unix.Close(fd)
		return nil, err
	}
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return nil, p.error("open", err)
	}
	return os.NewFile(uintptr(fd), p.String()), nil
}

// Stat describes the file itself, never a symbolic link's target, after
// the checks of Open.
func (p Path) Stat() (os.FileInfo, error) {
	dfd, err := p.dir.fd()
	if err != nil {
		return nil, err
	}
	var st unix.Stat_t
	if p.dir.trust.isShared() && p.name != ManifestName {
		f, err := p.pinned()
		if err != nil {
			return nil, err
		}
		err = unix.Fstat(int(f.Fd()), &st)
		if err != nil {
			return nil, p.error("stat", err)
		}
	} else if err := unix.Fstatat(dfd, p.name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return nil, p.error("stat", err)
	}
	if err := p.check(&st); err != nil {
		return nil, err
	}
	return fileInfo{name: p.name, st: st}, nil
}

// check refuses what Open and Stat must not accept.
func (p Path) check(st *unix.Stat_t) error {
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fmt.Errorf("%s: not a regular file (mode %#o)", p, st.Mode)
	}
	return p.dir.trust.check(p.String(), st, false)
}

// Create creates the file for writing, mode 0600. A file already there
// under its name (a stale image, or a symbolic link someone planted) is
// removed first, never followed; the new file is created exclusively, so
// that a link planted in between makes Create fail instead of writing
// through it.
func (p Path) Create() (*os.File, error) {
	dfd, err := p.dir.fd()
	if err != nil {
		return nil, err
	}
	// Removed only when there: a dump creates most names anew.
	fd, err := openBeneath(dfd, p.name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, 0o600)
	if errors.Is(err, unix.EEXIST) {
		if err := unix.Unlinkat(dfd, p.name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
			return nil, p.error("remove the old file", err)
		}
		fd, err = openBeneath(dfd, p.name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, 0o600)
	}
	if err != nil {
		return nil, p.error("create", err)
	}
	p.dir.contents.forget(p.name)
	return os.NewFile(uintptr(fd), p.String()), nil
}

// WriteFile creates the file (as Create) holding data.
func (p Path) WriteFile(data []byte) error {
	f, err := p.Create()
	if err != nil {
		return err
	}
	_, werr := f.Write(data)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return fmt.Errorf("%s: %w", p, werr)
	}
	p.dir.contents.wrote(p.name, Sum{Size: int64(len(data)), CRC: Checksum(data)})
	return nil
}

// Remove removes the file (a symbolic link itself, never its target); a
// file that is not there is not an error.
func (p Path) Remove() error {
	dfd, err := p.dir.fd()
	if err != nil {
		return err
	}
	if err := unix.Unlinkat(dfd, p.name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return p.error("remove", err)
	}
	p.dir.contents.forget(p.name)
	return nil
}

// fileInfo is the os.FileInfo of a regular file from its stat.
type fileInfo struct {
	name string
	st   unix.Stat_t
}

func (f fileInfo) Name() string       { return f.name }
func (f fileInfo) Size() int64        { return f.st.Size }
func (f fileInfo) Mode() fs.FileMode  { return fs.FileMode(f.st.Mode & 0o777) }
func (f fileInfo) ModTime() time.Time { return time.Unix(f.st.Mtim.Unix()) }
func (f fileInfo) IsDir() bool        { return false }
func (f fileInfo) Sys() any           { return &f.st }

// error is err of op on p, with the reason a refused symbolic link
// gives spelt out.
func (p Path) error(op string, err error) error {
	if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.EXDEV) {
		return fmt.Errorf("%s: %s: is a symbolic link or leads through one; amber never follows one in the images directory: %w", p, op, err)
	}
	return &os.PathError{Op: op, Path: p.String(), Err: err}
}

// openBeneath opens name relative to the directory dirfd through no
// symbolic link at all (RESOLVE_NO_SYMLINKS, O_NOFOLLOW) and without
// leaving it (RESOLVE_BENEATH), and returns the descriptor (close on
// exec).
func openBeneath(dirfd int, name string, flags int, mode uint32) (int, error) {
	how := &unix.OpenHow{
		Flags:   uint64(flags | unix.O_NOFOLLOW | unix.O_CLOEXEC),
		Mode:    uint64(mode),
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	}
	for {
		fd, err := unix.Openat2(dirfd, name, how)
		// EAGAIN: a rename raced the lookup (RESOLVE_BENEATH); try again.
		if errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN) {
			continue
		}
		return fd, err
	}
}

// IptablesPath is iptables-ID.img, the legacy IPv4 rules of network
// namespace nsID as iptables-save prints them (no image header).
func (d Dir) IptablesPath(nsID uint32) Path { return d.File(fmt.Sprintf("iptables-%d.img", nsID)) }

// Ip6tablesPath is ip6tables-ID.img, the legacy IPv6 rules of network
// namespace nsID as ip6tables-save prints them (no image header).
func (d Dir) Ip6tablesPath(nsID uint32) Path { return d.File(fmt.Sprintf("ip6tables-%d.img", nsID)) }

// NftablesPath is nftables-ID.img, the nftables rules of network
// namespace nsID as "nft list ruleset" prints them (no image header).
func (d Dir) NftablesPath(nsID uint32) Path { return d.File(fmt.Sprintf("nftables-%d.img", nsID)) }
