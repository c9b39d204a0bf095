package restore

import (
	"fmt"
	"io"
	"os"

	criucore "github.com/checkpoint-restore/go-criu/v8/crit/images/criu-core"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	fsimg "github.com/checkpoint-restore/go-criu/v8/crit/images/fs"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/inventory"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/mm"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/pagemap"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/pstree"

	"amber/internal/files"
	"amber/internal/image"
	"amber/internal/mem"
)

// imagesVersion is the only img_version amber reads.
const imagesVersion = 2

// taskImages are the images of one task, read and checked.
type taskImages struct {
	pid       int
	tree      *pstree.PstreeEntry
	core      *criucore.CoreEntry
	mm        *mm.MmEntry
	pagemap   []*pagemap.PagemapEntry
	pagesPath string
	fds       []*fdinfo.FdinfoEntry
	fs        *fsimg.FsEntry
	files     files.Index
	pipes     map[uint32][]byte
}

func newOf[T any]() func() *T { return func() *T { return new(T) } }

// load reads the images of the (single) task in dir.
func load(dir image.Dir) (*taskImages, error) {
	inv, err := image.ReadOne(dir.InventoryPath(), image.Inventory, newOf[inventory.InventoryEntry]())
	if err != nil {
		return nil, err
	}
	if v := inv.GetImgVersion(); v != imagesVersion {
		return nil, fmt.Errorf("%s: img_version %d, amber reads %d", dir.InventoryPath(), v, imagesVersion)
	}
	trees, err := image.ReadFile(dir.PstreePath(), image.Pstree, newOf[pstree.PstreeEntry]())
	if err != nil {
		return nil, err
	}
	if len(trees) != 1 {
		return nil, fmt.Errorf("%s: %d processes: process trees are not supported yet", dir.PstreePath(), len(trees))
	}
	t := &taskImages{tree: trees[0], pid: int(trees[0].GetPid())}
	if n := len(t.tree.GetThreads()); n != 1 {
		return nil, fmt.Errorf("%s: pid %d has %d threads: multi-threaded processes are not supported yet", dir.PstreePath(), t.pid, n)
	}
	if t.pid <= 0 {
		return nil, fmt.Errorf("%s: invalid pid %d", dir.PstreePath(), t.pid)
	}
	if err := t.loadCore(dir); err != nil {
		return nil, err
	}
	if err := t.loadMemory(dir); err != nil {
		return nil, err
	}
	return t, t.loadFiles(dir)
}

func (t *taskImages) loadCore(dir image.Dir) error {
	path := dir.CorePath(t.pid)
	core, err := image.ReadOne(path, image.Core, newOf[criucore.CoreEntry]())
	if err != nil {
		return err
	}
	if a := core.GetMtype(); a != criucore.CoreEntry_X86_64 {
		return fmt.Errorf("%s: images of architecture %v; amber restores x86_64", path, a)
	}
	if core.GetThreadInfo() == nil || core.GetTc() == nil || core.GetThreadCore() == nil {
		return fmt.Errorf("%s: thread_info, tc and thread_core are required", path)
	}
	if core.GetThreadInfo().GetGpregs() == nil || core.GetThreadInfo().GetFpregs() == nil {
		return fmt.Errorf("%s: registers missing", path)
	}
	if s := core.GetTc().GetTaskState(); s != taskAlive {
		return fmt.Errorf("%s: task state %d: only live tasks are supported yet", path, s)
	}
	t.core = core
	return nil
}

// taskAlive is CRIU's task_state of a running task.
const taskAlive = 1

func (t *taskImages) loadMemory(dir image.Dir) error {
	var err error
	if t.mm, err = image.ReadOne(dir.MMPath(t.pid), image.MM, newOf[mm.MmEntry]()); err != nil {
		return err
	}
	path := dir.PagemapPath(t.pid)
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	r, err := image.NewReader(f, path, image.Pagemap)
	if err != nil {
		return err
	}
	var head pagemap.PagemapHead
	if err := r.Next(&head); err != nil {
		return fmt.Errorf("%s: head: %w", path, err)
	}
	var pages uint64
	for {
		e := new(pagemap.PagemapEntry)
		if err := r.Next(e); err == io.EOF {
			break
		} else if err != nil {
			return err
		}
		if e.GetFlags()&mem.PEPresent != 0 {
			pages += mem.NrPages(e)
		}
		t.pagemap = append(t.pagemap, e)
	}
	t.pagesPath = dir.PagesPath(head.GetPagesId())
	st, err := os.Stat(t.pagesPath)
	if err != nil {
		return err
	}
	if uint64(st.Size()) != pages*4096 {
		return fmt.Errorf("%s: %d bytes, but %s lists %d pages: truncated or mismatched images", t.pagesPath, st.Size(), path, pages)
	}
	return nil
}

func (t *taskImages) loadFiles(dir image.Dir) error {
	ids := t.core.GetIds()
	filesID := uint32(1)
	if ids != nil {
		filesID = ids.GetFilesId()
	}
	if p := dir.IDsPath(t.pid); ids == nil {
		if e, err := image.ReadOne(p, image.IDs, newOf[criucore.TaskKobjIdsEntry]()); err == nil {
			filesID = e.GetFilesId()
		} else if !os.IsNotExist(err) {
			return err
		}
	}
	var err error
	if t.fds, err = image.ReadFile(dir.FdinfoPath(filesID), image.Fdinfo, newOf[fdinfo.FdinfoEntry]()); err != nil {
		return err
	}
	if t.fs, err = image.ReadOne(dir.FSPath(t.pid), image.FS, newOf[fsimg.FsEntry]()); err != nil {
		return err
	}
	if t.files, err = files.ReadIndex(dir); err != nil {
		return err
	}
	t.pipes, err = files.ReadPipesData(dir)
	return err
}
