package files

import (
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"

	fsimg "github.com/checkpoint-restore/go-criu/v8/crit/images/fs"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/plan"
)

// dirFlags are the open flags of a task's working directory and root in
// files.img.
const dirFlags = uint32(unix.O_RDONLY | unix.O_DIRECTORY)

// DumpFS records the task's working directory, root and umask. A
// working directory removed since the task entered it is a ghost
// directory, as an open one is.
func (d *Dumper) DumpFS(pid int, umask uint32) (*fsimg.FsEntry, error) {
	cwdID, err := d.dumpDir(pid, fmt.Sprintf("/proc/%d/cwd", pid))
	if err != nil {
		return nil, fmt.Errorf("cwd: %w", err)
	}
	root, err := os.Readlink(fmt.Sprintf("/proc/%d/root", pid))
	if err != nil {
		return nil, err
	}
	rootID, err := d.Table.AddPath(pid, root, dirFlags)
	if err != nil {
		return nil, fmt.Errorf("root: %w", err)
	}
	return &fsimg.FsEntry{CwdId: proto.Uint32(cwdID), RootId: proto.Uint32(rootID), Umask: proto.Uint32(umask)}, nil
}

// dumpDir records the directory that /proc link at names.
func (d *Dumper) dumpDir(pid int, at string) (uint32, error) {
	link, err := os.Readlink(at)
	if err != nil {
		return 0, err
	}
	if !strings.HasSuffix(link, " (deleted)") {
		return d.Table.AddPath(pid, link, dirFlags)
	}
	st, err := os.Stat(at)
	if err != nil {
		return 0, err
	}
	if id, ok := d.Table.regs[regKey{path: link, flags: dirFlags}]; ok && d.ghosts.isGhost(id) {
		return id, nil
	}
	id, err := d.addGhostAt(at, link, 0, st, dirFlags)
	if err == nil {
		d.Table.regs[regKey{path: link, flags: dirFlags}] = id
	}
	return id, err
}

// FSInput is what planning a task's working directory and root needs.
type FSInput struct {
	Entry *fsimg.FsEntry
	Files Index
	Extra *Extra // nil: no unlinked files
	// Held are the task's descriptors by file id (Restored.Held; nil:
	// the task shares its parent's).
	Held map[uint32]int
	// Stat looks files up as they are now (os.Stat outside tests).
	Stat func(path string) (os.FileInfo, error)
	// TreeProc is the tree's own /proc while the task sees amber's
	// there (RestoreInput.TreeProc; "": the one it sees).
	TreeProc string
}

// PlanFS plans entering the dumped working directory and setting the
// umask; PlanRoot changes the root later. A removed working directory is
// made again, entered and removed; if the task holds a descriptor of it,
// the task enters that one, so both stay one directory.
func PlanFS(b *plan.Builder, in FSInput) error {
	e := in.Entry
	cwd, err := in.Files.RegPath(e.GetCwdId())
	if err != nil {
		return fmt.Errorf("fs cwd: %w", err)
	}
	// cwd is a path in amber's root: enter it before changing root.
	if g := in.Extra.ghostOf(e.GetCwdId()); g != nil {
		if err := in.planGhostCwd(b, cwd, g); err != nil {
			return fmt.Errorf("fs cwd: %w", err)
		}
	} else if in.Extra.deadProc(cwd) {
		planDeadProcCwd(b, cwd, in.TreeProc)
	} else {
		b.Call("chdir "+cwd, unix.SYS_CHDIR, b.String(cwd))
	}
	if e.Umask != nil {
		b.Call(fmt.Sprintf("umask %o", e.GetUmask()), unix.SYS_UMASK, uint64(e.GetUmask()))
	}
	return nil
}

// PlanRoot plans changing the root to the dumped one, if it is not
// amber's. Every path of the images is one in amber's root, and children
// forked after the process's main section inherit its root: so the
// process changes its root once the whole tree is forked, and before its
// threads take back their credentials, which may not allow chroot.
func PlanRoot(b *plan.Builder, e *fsimg.FsEntry, idx Index) error {
	root, err := idx.RegPath(e.GetRootId())
	if err != nil {
		return fmt.Errorf("fs root: %w", err)
	}
	if root != "/" {
		b.Call("chroot "+root, unix.SYS_CHROOT, b.String(root))
	}
	return nil
}

// planGhostCwd plans entering the removed directory cwd, ghost g.
func (in FSInput) planGhostCwd(b *plan.Builder, cwd string, g *Ghost) error {
	for _, id := range slices.Sorted(maps.Keys(in.Held)) {
		if in.Extra.ghostOf(id) == g {
			fd := in.Held[id]
			b.Call(fmt.Sprintf("fchdir fd %d (removed directory %s)", fd, cwd), unix.SYS_FCHDIR, uint64(fd))
			return nil
		}
	}
	at, made, err := planGhostNode(b, in.Stat, cwd, g)
	if err != nil {
		return err
	}
	b.Call("chdir "+at, unix.SYS_CHDIR, b.String(at))
	planRemoveGhost(b, at, g, made)
	return nil
}
