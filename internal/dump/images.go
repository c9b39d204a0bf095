package dump

import (
	"fmt"
	"os"

	criucore "github.com/checkpoint-restore/go-criu/v8/crit/images/criu-core"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	fsimg "github.com/checkpoint-restore/go-criu/v8/crit/images/fs"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/inventory"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/mm"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/pstree"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/files"
	"amber/internal/image"
	"amber/internal/mem"
	"amber/internal/proc"
)

// imagesVersion is CRIU's img_version for images with per-id fdinfo.
const imagesVersion = 2

// pagesID numbers the task's pages image (pages-1.img).
const pagesID = 1

// kobjID is the id every kernel object of a single task gets: nothing is
// shared with another task of the dump.
const kobjID = 1

func (d *dumper) mmEntry(f *frozen) (*mm.MmEntry, error) {
	vmas, err := mem.Entries(f.vmas, func(v proc.VMA) (uint32, error) {
		flags := uint32(unix.O_RDONLY)
		if v.Shared && v.Prot&unix.PROT_WRITE != 0 {
			flags = unix.O_RDWR
		}
		return d.files.AddPath(v.Path, flags)
	})
	if err != nil {
		return nil, err
	}
	auxv, err := proc.ReadAuxv(f.pid)
	if err != nil {
		return nil, err
	}
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", f.pid))
	if err != nil {
		return nil, err
	}
	exeID, err := d.files.AddPath(exe, unix.O_RDONLY)
	if err != nil {
		return nil, fmt.Errorf("exe %s: %w", exe, err)
	}
	s := f.stat
	return &mm.MmEntry{
		MmStartCode:  proto.Uint64(s.StartCode),
		MmEndCode:    proto.Uint64(s.EndCode),
		MmStartData:  proto.Uint64(s.StartData),
		MmEndData:    proto.Uint64(s.EndData),
		MmStartStack: proto.Uint64(s.StartStack),
		MmStartBrk:   proto.Uint64(s.StartBrk),
		MmBrk:        proto.Uint64(f.brk),
		MmArgStart:   proto.Uint64(s.ArgStart),
		MmArgEnd:     proto.Uint64(s.ArgEnd),
		MmEnvStart:   proto.Uint64(s.EnvStart),
		MmEnvEnd:     proto.Uint64(s.EnvEnd),
		ExeFileId:    proto.Uint32(exeID),
		MmSavedAuxv:  auxv,
		Vmas:         vmas,
	}, nil
}

func kobjIDs() *criucore.TaskKobjIdsEntry {
	id := proto.Uint32(kobjID)
	return &criucore.TaskKobjIdsEntry{
		VmId: id, FilesId: id, FsId: id, SighandId: id,
		PidNsId: id, NetNsId: id, IpcNsId: id, UtsNsId: id, MntNsId: id, UserNsId: id,
		CgroupNsId: id, TimeNsId: id,
	}
}

// writeImages writes every image but the pages, which DumpPages streams.
func (d *dumper) writeImages(f *frozen, core *criucore.CoreEntry, mmE *mm.MmEntry, fds *files.Dumped, fsE *fsimg.FsEntry) error {
	pid := f.pid
	ids := kobjIDs()
	inv := &inventory.InventoryEntry{
		ImgVersion:  proto.Uint32(imagesVersion),
		FdinfoPerId: proto.Bool(true),
		RootIds:     ids,
		NsPerId:     proto.Bool(true),
		Lsmtype:     inventory.Lsmtype_NO_LSM.Enum(),
	}
	tree := &pstree.PstreeEntry{
		Pid:     proto.Uint32(uint32(pid)),
		Ppid:    proto.Uint32(0),
		Pgid:    proto.Uint32(uint32(f.stat.Pgrp)),
		Sid:     proto.Uint32(uint32(f.stat.Session)),
		Threads: []uint32{uint32(pid)},
	}
	writes := []struct {
		path    string
		kind    image.Kind
		entries []proto.Message
	}{
		{d.dir.InventoryPath(), image.Inventory, []proto.Message{inv}},
		{d.dir.PstreePath(), image.Pstree, []proto.Message{tree}},
		{d.dir.CorePath(pid), image.Core, []proto.Message{core}},
		{d.dir.IDsPath(pid), image.IDs, []proto.Message{ids}},
		{d.dir.MMPath(pid), image.MM, []proto.Message{mmE}},
		{d.dir.FdinfoPath(kobjID), image.Fdinfo, fdinfoMessages(fds.Fds)},
		{d.dir.FSPath(pid), image.FS, []proto.Message{fsE}},
	}
	for _, w := range writes {
		if err := image.WriteFile(w.path, w.kind, w.entries...); err != nil {
			return err
		}
	}
	if err := files.WritePipesData(d.dir, fds.Pipes); err != nil {
		return err
	}
	// files.img last: every kind above may have added files to it.
	return d.files.Write(d.dir)
}

func fdinfoMessages(fds []*fdinfo.FdinfoEntry) []proto.Message {
	out := make([]proto.Message, len(fds))
	for i, f := range fds {
		out[i] = f
	}
	return out
}
