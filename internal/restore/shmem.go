package restore

import (
	"amber/internal/files"
	"amber/internal/image"
	"amber/internal/mem"
	ptree "amber/internal/pstree"
)

// sharedImages are the shared memory objects of the whole tree:
// anonymous shared memory, with which task creates each, and memfds.
// (SysV segments are made before any task: see restoreTree.)
type sharedImages struct {
	anon   map[uint64]*mem.Shmem
	memfds *files.MemfdImages
}

// loadShared reads the tree's shared memory objects.
func loadShared(dir image.Dir, tree *treeImages) (*sharedImages, error) {
	var tasks []mem.TaskVMAs
	for _, t := range tree.restoreOrder() {
		tasks = append(tasks, mem.TaskVMAs{Pid: t.pid, VMAs: t.mm.GetVmas()})
	}
	anon, err := mem.LoadShmem(dir, tasks)
	if err != nil {
		return nil, err
	}
	memfds, err := files.ReadMemfds(dir)
	if err != nil {
		return nil, err
	}
	return &sharedImages{anon: anon, memfds: memfds}, nil
}

// restoreOrder lists the live processes in the order restoreProcess
// makes them (the tree's plan).
func (tree *treeImages) restoreOrder() []*taskImages {
	var out []*taskImages
	tree.plan.Walk(func(n *ptree.Node) {
		if n.Kind == ptree.Live {
			out = append(out, tree.byPid[n.Pid])
		}
	})
	return out
}

// sharedOf returns the tree's shared memory objects (none for a task
// built without them, as in tests).
func (t *taskImages) sharedOf() *sharedImages {
	if t.shared == nil {
		return &sharedImages{memfds: &files.MemfdImages{}}
	}
	return t.shared
}

// newMemfds returns the memfd planner of a process whose descriptors,
// once restored, are numbered below safe.
func newMemfds(t *taskImages, h *host, safe int) *files.Memfds {
	return files.NewMemfds(t.sharedOf().memfds, t.files, safe, h.memfdHolder)
}
