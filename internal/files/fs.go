package files

import (
	"fmt"
	"os"

	fsimg "github.com/checkpoint-restore/go-criu/v8/crit/images/fs"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/plan"
)

// DumpFS records the task's working directory, root and umask.
func DumpFS(pid int, t *Table, umask uint32) (*fsimg.FsEntry, error) {
	cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
	if err != nil {
		return nil, err
	}
	root, err := os.Readlink(fmt.Sprintf("/proc/%d/root", pid))
	if err != nil {
		return nil, err
	}
	dirFlags := uint32(unix.O_RDONLY | unix.O_DIRECTORY)
	cwdID, err := t.AddPath(cwd, dirFlags)
	if err != nil {
		return nil, fmt.Errorf("cwd: %w", err)
	}
	rootID, err := t.AddPath(root, dirFlags)
	if err != nil {
		return nil, fmt.Errorf("root: %w", err)
	}
	return &fsimg.FsEntry{CwdId: proto.Uint32(cwdID), RootId: proto.Uint32(rootID), Umask: proto.Uint32(umask)}, nil
}

// PlanFS plans entering the dumped root and working directory and setting
// the umask.
func PlanFS(b *plan.Builder, e *fsimg.FsEntry, idx Index) error {
	root, err := idx.RegPath(e.GetRootId())
	if err != nil {
		return fmt.Errorf("fs root: %w", err)
	}
	cwd, err := idx.RegPath(e.GetCwdId())
	if err != nil {
		return fmt.Errorf("fs cwd: %w", err)
	}
	// cwd is a path in amber's root: enter it before changing root.
	b.Call("chdir "+cwd, unix.SYS_CHDIR, b.String(cwd))
	if root != "/" {
		b.Call("chroot "+root, unix.SYS_CHROOT, b.String(root))
	}
	if e.Umask != nil {
		b.Call(fmt.Sprintf("umask %o", e.GetUmask()), unix.SYS_UMASK, uint64(e.GetUmask()))
	}
	return nil
}
