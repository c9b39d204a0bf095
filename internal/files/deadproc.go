package files

import (
	"errors"
	"fmt"
	"os"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	remap "github.com/checkpoint-restore/go-criu/v8/crit/images/remap-file-path"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/plan"
)

// Files of a dead process's /proc directory: a task may hold /proc/PID
// itself, a file under it (/proc/PID/mountinfo) or have it as its working
// directory after process PID exited and was reaped. The kernel keeps the
// file, its dentry unhashed (/proc shows "/proc/PID (deleted)" for the
// directory, the plain path for a file under it), and nothing can open it
// again by its path. As CRIU does, the dump records such a file as a
// regular file with its path (as the tree sees it) and one
// RemapFilePathEntry of type PROCFS per dead PID, remap_id the PID; the
// restore makes a helper task with that PID in the tree's pid namespace
// (pstree.DeadHelper) before any task opens a file, the tasks open them
// by their paths in the tree's /proc, and the helper ends and is reaped
// before the tree runs, which leaves their files as they were: of a
// process that is gone.

// deadProcPid is the PID whose /proc directory path (the tree's) is, or
// is under, when that process is gone and the file, which the /proc link
// at names, is on a procfs: 0 otherwise.
func (d *Dumper) deadProcPid(at, path string) int {
	pid := treeProcPid(path, func(int) bool { return true })
	if pid == 0 || !onProcfs(nil, at) {
		return 0
	}
	if _, err := d.Table.stat(fmt.Sprintf("/proc/%d", pid)); !errors.Is(err, os.ErrNotExist) {
		return 0
	}
	return pid
}

// addDeadProc records name, a file under /proc/PID of pid, a process
// gone: a regular file, and the PROCFS remap of pid if it has none yet.
func (d *Dumper) addDeadProc(pid int, name string, pos uint64, st os.FileInfo, flags uint32) uint32 {
	g := d.ghostState()
	id := d.Table.addReg(name, flags, pos, st)
	if g.deadFiles == nil {
		g.deadFiles, g.deadPids = map[uint32]bool{}, map[int]bool{}
	}
	g.deadFiles[id] = true
	if !g.deadPids[pid] {
		g.deadPids[pid] = true
		g.remaps = append(g.remaps, &remap.RemapFilePathEntry{
			OrigId: proto.Uint32(id), RemapId: proto.Uint32(uint32(pid)), RemapType: remap.RemapType_PROCFS.Enum(),
		})
	}
	return id
}

// isDeadProc reports whether file id is under /proc/PID of a process
// gone at the dump.
func (g *ghostState) isDeadProc(id uint32) bool { return g != nil && g.deadFiles[id] }

// DeadPids lists the PIDs of the processes gone at the dump that files of
// the tree were under /proc/PID of (remap-fpath.img's PROCFS remaps): the
// restore makes a helper with each PID while the tasks open their files.
func (x *Extra) DeadPids() []int {
	if x == nil {
		return nil
	}
	var out []int
	for pid := range x.deadPids {
		out = append(out, pid)
	}
	return out
}

// deadProc tells whether path is under /proc/PID of a dead PID.
func (x *Extra) deadProc(path string) bool {
	return x != nil && treeProcPid(path, func(pid int) bool { return x.deadPids[pid] }) != 0
}

// makeDeadProc opens e, a file under /proc/PID of a dead PID, while the
// helper with that PID exists: in the tree's own /proc, which amber's
// hides from a tree in a mount namespace of its own until the restore
// ends. It is not checked: a /proc file's size says nothing.
func (p *fdPlanner) makeDeadProc(e *fdinfo.FileEntry) int {
	return planLateProc(p.b, e, p.procDir())
}

// procDir is the descriptor of the tree's own /proc the task holds from
// its files plan to its final section (Restored.ProcDir), opened at the
// first need: 0 when the /proc the task sees is the tree's.
func (p *fdPlanner) procDir() int {
	if p.in.TreeProc != "" && p.table.ProcDir == 0 {
		dir := p.b.Open("the tree's own /proc, for its files under /proc/PID", p.in.TreeProc, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		p.table.ProcDir = p.b.MoveAbove(dir, p.safe)
	}
	return p.table.ProcDir
}

// planDeadProcCwd plans entering cwd, /proc/PID of a dead PID, in the
// tree's own /proc (treeProc; "": the /proc the task sees).
func planDeadProcCwd(b *plan.Builder, cwd, treeProc string) {
	if treeProc == "" {
		b.Call("chdir "+cwd+" (of a dead process, its helper standing in)", unix.SYS_CHDIR, b.String(cwd))
		return
	}
	dir := b.Open("the tree's own /proc, for the working directory", treeProc, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	fd := b.OpenAt("working directory "+cwd+" (of a dead process, its helper standing in)", dir, cwd[len("/proc/"):], unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	b.Call(fmt.Sprintf("fchdir fd %d (%s)", fd, cwd), unix.SYS_FCHDIR, uint64(fd))
	b.Close(fd)
	b.Close(dir)
}
