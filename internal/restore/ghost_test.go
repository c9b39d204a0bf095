package restore

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	ghostfile "github.com/checkpoint-restore/go-criu/v8/crit/images/ghost-file"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/vma"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/files"
	"amber/internal/fsroot"
	"amber/internal/mem"
	"amber/internal/proc"
)

// TestPlanTaskMappedGhost plans a process that maps a deleted file
// MAP_SHARED (a POSIX semaphore) and holds a descriptor of it: both open
// the ghost where amber made it, and the process neither makes nor
// removes it, nor looks for the deleted path. Without that ghost made
// the plan fails, naming the file.
func TestPlanTaskMappedGhost(t *testing.T) {
	const at, start = "/dev/shm/sem.x.amber.1.ghost", 0x7fff_f7e0_0000
	im := newImages()
	sem := im.reg("/dev/shm/sem.x", unix.O_RDWR, 0, 32)
	delete(im.fs, "/dev/shm/sem.x")
	im.fs["/dev/shm"] = -1
	im.t.extra = &files.Extra{Ghosts: map[uint32]*files.Ghost{sem: {ID: 1, Size: 32,
		Entry: &ghostfile.GhostFileEntry{Mode: proto.Uint32(unix.S_IFREG | 0o600)}}}}
	shared, err := mem.Entries([]proc.VMA{{Start: start, End: start + page, Prot: unix.PROT_READ | unix.PROT_WRITE,
		Shared: true, Path: "/f", VmFlags: []string{"rd", "wr", "sh", "mr", "mw"}}}, func(proc.VMA) (uint32, error) { return sem, nil })
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(im.t.mm.Vmas, func(v *vma.VmaEntry) bool { return v.GetStart() > start })
	im.t.mm.Vmas = slices.Insert(im.t.mm.Vmas, i, shared...)
	im.t.fds = append(im.t.fds, fd(4, sem, false))
	h := im.host()
	h.ghosts = map[uint32]string{1: at}
	p, err := planTask(im.t, h, &origin{current: stub()})
	if err != nil {
		t.Fatal(err)
	}
	var opens int
	mapped := false
	for _, c := range p.prog.Calls {
		switch {
		case c.Nr == unix.SYS_OPENAT && strings.Contains(c.What, at):
			opens++
			if c.Args[2]&unix.O_CREAT != 0 {
				t.Errorf("the task creates the ghost: %s", c.What)
			}
		case strings.Contains(c.What, "/dev/shm/sem.x") && !strings.Contains(c.What, at):
			t.Errorf("the task looks for the deleted path: %s", c.What)
		case c.Nr == unix.SYS_UNLINKAT:
			t.Errorf("the task unlinks: %s", c.What)
		case c.Nr == unix.SYS_MMAP && c.Args[0] == start:
			mapped = c.Args[3]&unix.MAP_SHARED != 0
		}
	}
	if opens != 2 || !mapped {
		t.Errorf("%d opens of %s (want 2: the mapping, fd 4), mapped shared %v:\n%s", opens, at, mapped, p.prog)
	}
	h.ghosts = nil
	if _, err := planTask(im.t, h, &origin{current: stub()}); err == nil || !strings.Contains(err.Error(), "unlinked file") {
		t.Errorf("no ghost made: %v", err)
	}
}

// TestMakeGhostsMountNamespace: a tree restored in a mount namespace
// of its own gets its mapped deleted file made in its root, by the
// tree's path, and removed from there; amber's own /dev/shm is not
// touched.
func TestMakeGhostsMountNamespace(t *testing.T) {
	const start = 0x7fff_f7e0_0000
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "dev/shm"), 0o755); err != nil {
		t.Fatal(err)
	}
	root, err := fsroot.Dir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	im := newImages()
	sem := im.reg("/dev/shm/sem.x", unix.O_RDWR, 0, 32)
	im.t.extra = &files.Extra{Ghosts: map[uint32]*files.Ghost{sem: {ID: 1, Size: 32,
		Entry: &ghostfile.GhostFileEntry{Mode: proto.Uint32(unix.S_IFREG | 0o600)}}}}
	shared, err := mem.Entries([]proc.VMA{{Start: start, End: start + page, Prot: unix.PROT_READ,
		Shared: true, Path: "/f", VmFlags: []string{"rd", "sh", "mr"}}}, func(proc.VMA) (uint32, error) { return sem, nil })
	if err != nil {
		t.Fatal(err)
	}
	im.t.mm.Vmas = append(im.t.mm.Vmas, shared...)
	h := im.host()
	h.root, h.stat = root, root.Stat
	ghosts, err := makeGhosts(&treeImages{tasks: []*taskImages{im.t}, root: im.t}, h)
	if err != nil {
		t.Fatal(err)
	}
	const at = "/dev/shm/sem.x.amber.1.ghost"
	if h.ghosts[1] != at {
		t.Errorf("ghost paths %v, want %s", h.ghosts, at)
	}
	if st, err := os.Stat(filepath.Join(dir, at)); err != nil || st.Size() != 32 {
		t.Fatalf("the ghost in the tree's root: %v, %v", st, err)
	}
	if _, err := os.Stat(at); err == nil {
		t.Errorf("%s made in amber's root", at)
	}
	if err := ghosts.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, at)); !os.IsNotExist(err) {
		t.Errorf("the ghost stays after Remove: %v", err)
	}
}
