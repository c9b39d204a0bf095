package restore

import (
	"slices"
	"strings"
	"testing"

	ghostfile "github.com/checkpoint-restore/go-criu/v8/crit/images/ghost-file"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/vma"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/files"
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

// TestMakeGhostsMountNamespace: a tree restored in a new mount namespace
// with a mapped deleted file is refused before amber makes the ghost by
// the tree's path on its own mounts.
func TestMakeGhostsMountNamespace(t *testing.T) {
	const start = 0x7fff_f7e0_0000
	im := newImages()
	sem := im.reg("/dev/shm/sem.x", unix.O_RDWR, 0, 32)
	delete(im.fs, "/dev/shm/sem.x")
	im.fs["/dev/shm"] = -1
	im.t.extra = &files.Extra{Ghosts: map[uint32]*files.Ghost{sem: {ID: 1, Size: 32,
		Entry: &ghostfile.GhostFileEntry{Mode: proto.Uint32(unix.S_IFREG | 0o600)}}}}
	shared, err := mem.Entries([]proc.VMA{{Start: start, End: start + page, Prot: unix.PROT_READ,
		Shared: true, Path: "/f", VmFlags: []string{"rd", "sh", "mr"}}}, func(proc.VMA) (uint32, error) { return sem, nil })
	if err != nil {
		t.Fatal(err)
	}
	im.t.mm.Vmas = append(im.t.mm.Vmas, shared...)
	tree := &treeImages{tasks: []*taskImages{im.t}, root: im.t}
	_, err = makeGhosts(tree, im.host(), unix.CLONE_NEWNS)
	if err == nil || !strings.Contains(err.Error(), "mount namespace of its own") || !strings.Contains(err.Error(), "/dev/shm/sem.x") {
		t.Fatalf("got %v, want a refusal naming the file and the mount namespace", err)
	}
	// The plain file mappings every process has are no ghosts.
	plain := newImages()
	if _, err := makeGhosts(&treeImages{tasks: []*taskImages{plain.t}, root: plain.t}, plain.host(), unix.CLONE_NEWNS); err != nil {
		t.Fatalf("a tree without ghosts: %v", err)
	}
}
