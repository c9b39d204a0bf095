package files

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"syscall"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/memfd"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/image"
	"amber/internal/mem"
	"amber/internal/plan"
	"amber/internal/proc"
)

// Memfds, as CRIU's memfd.c has them. A memfd is a file of the kernel's
// internal shmem mount, named "/memfd:NAME (deleted)". Its inode (name,
// owner, mode, size, seals) is one MemfdInodeEntry of memfd.img, whatever
// opens or maps it; its contents are pagemap-shmem-INO.img and a pages
// image, as for any shared memory object (package mem). Each open file
// description of it is a files.img entry of type MEMFD naming the inode;
// mappings of it name one more such entry, one per memfd, in their
// VmaEntry.shmid.
//
// Restore makes each inode once, in the first task that needs it, with
// memfd_create, its contents, size, owner and mode; the seals come last,
// in the final section, once every task has mapped and opened it. The
// task keeps the memfd open above every target descriptor (a "handle")
// from the moment its memory plan or its descriptor plan first needs it
// until then: the memory plan maps from it, the descriptor plan reopens
// it (/proc/self/fd/HANDLE) for each open file, or hands the first
// read-write one the very description memfd_create made, and tasks
// restored later reopen it through /proc/PID/fd/HANDLE.

// memfdState is what a dump keeps of memfds.
type memfdState struct {
	inodes  map[fileKey]uint32 // inode id by file identity
	maps    map[fileKey]uint32 // files.img id that mappings of each memfd name
	entries []*memfd.MemfdInodeEntry
	sources []mem.ShmemSource
}

func (d *Dumper) memfds() *memfdState {
	if d.memfd == nil {
		d.memfd = &memfdState{inodes: map[fileKey]uint32{}, maps: map[fileKey]uint32{}}
	}
	return d.memfd
}

// isMemfdLink tells a memfd by the name of its file.
func isMemfdLink(link string) bool { return strings.HasPrefix(link, mem.MemfdPrefix) }

// addMemfd adds the memfd open at pid's fd to the table.
func (d *Dumper) addMemfd(pid, fd int, link string, info proc.FdInfo, st os.FileInfo, flags uint32) (uint32, fdinfo.FdTypes, error) {
	ino, err := d.memfdInode(fmt.Sprintf("/proc/%d/fd/%d", pid, fd), link, st)
	if err != nil {
		return 0, 0, err
	}
	return d.Table.addMemfd(flags, uint64(info.Pos), ino), fdinfo.FdTypes_MEMFD, nil
}

// MemfdMapping returns the files.img id that a mapping of a memfd names:
// one entry per memfd, for all its mappings in every task.
func (d *Dumper) MemfdMapping(pid int, v proc.VMA) (uint32, error) {
	path := fmt.Sprintf("/proc/%d/map_files/%x-%x", pid, v.Start, v.End)
	st, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	link, err := os.Readlink(path)
	if err != nil {
		return 0, err
	}
	s := d.memfds()
	if id, ok := s.maps[keyOf(st)]; ok {
		return id, nil
	}
	ino, err := d.memfdInode(path, link, st)
	if err != nil {
		return 0, err
	}
	id := d.Table.addMemfd(unix.O_RDONLY, 0, ino)
	s.maps[keyOf(st)] = id
	return id, nil
}

// memfdInode returns the inode id of the memfd at path (its link reads
// link), recording the inode and its contents the first time.
func (d *Dumper) memfdInode(path, link string, st os.FileInfo) (uint32, error) {
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, fmt.Errorf("%s: no stat", link)
	}
	if d.opts.ShmemDev == 0 || sys.Dev != d.opts.ShmemDev {
		return 0, fmt.Errorf("%s: memfd on device %d:%d, not the shmem mount (hugetlb?): not supported",
			link, unix.Major(sys.Dev), unix.Minor(sys.Dev))
	}
	s := d.memfds()
	if id, ok := s.inodes[keyOf(st)]; ok {
		return id, nil
	}
	seals, err := memfdSeals(path)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", link, err)
	}
	id := uint32(len(s.entries)) + 1
	name := strings.TrimSuffix(strings.TrimPrefix(link, mem.MemfdPrefix), " (deleted)")
	s.entries = append(s.entries, &memfd.MemfdInodeEntry{
		Name: proto.String(name), Uid: proto.Uint32(d.users.InnerUid(sys.Uid)), Gid: proto.Uint32(d.users.InnerGid(sys.Gid)),
		Size: proto.Uint64(uint64(sys.Size)), Shmid: proto.Uint32(uint32(sys.Ino)),
		Seals: proto.Uint32(seals), InodeId: proto.Uint64(uint64(id)), Mode: proto.Uint32(sys.Mode),
	})
	s.sources = append(s.sources, mem.ShmemSource{Shmid: uint64(uint32(sys.Ino)), Path: path, Size: uint64(sys.Size)})
	s.inodes[keyOf(st)] = id
	return id, nil
}

func memfdSeals(path string) (uint32, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	seals, err := unix.FcntlInt(f.Fd(), unix.F_GET_SEALS, 0)
	if err != nil {
		return 0, fmt.Errorf("F_GET_SEALS: %w", err)
	}
	return uint32(seals), nil
}

// addMemfd adds a MEMFD entry for an open file of memfd inode ino.
func (t *Table) addMemfd(flags uint32, pos uint64, ino uint32) uint32 {
	id := t.nextID()
	t.entries = append(t.entries, &fdinfo.FileEntry{Type: fdinfo.FdTypes_MEMFD.Enum(), Id: proto.Uint32(id),
		Memfd: &memfd.MemfdFileEntry{Id: proto.Uint32(id), Flags: proto.Uint32(flags), Pos: proto.Uint64(pos),
			Fown: newFown(), InodeId: proto.Uint32(ino)}})
	return id
}

// MemfdContents lists the memfds whose pages the dump must save
// (mem.DumpShmem), while the tasks are still frozen.
func (d *Dumper) MemfdContents() []mem.ShmemSource {
	if d.memfd == nil {
		return nil
	}
	return d.memfd.sources
}

// WriteMemfds writes memfd.img if the dump has memfds.
func (d *Dumper) WriteMemfds(dir image.Dir) error {
	if d.memfd == nil {
		return nil
	}
	return image.WriteFile(dir.MemfdPath(), image.MemfdInode, memfdMessages(d.memfd.entries)...)
}

func memfdMessages[T proto.Message](in []T) []proto.Message {
	out := make([]proto.Message, len(in))
	for i, m := range in {
		out[i] = m
	}
	return out
}

// MemfdImages are the memfd inodes of a dump and their contents.
type MemfdImages struct {
	Inodes map[uint32]*memfd.MemfdInodeEntry // by inode id
	Pages  map[uint32]*mem.ShmemPages        // by inode id
}

// ReadMemfds reads memfd.img and the pages of every memfd; a dump
// without memfd.img has none.
func ReadMemfds(dir image.Dir) (*MemfdImages, error) {
	all, err := image.ReadFile(dir.MemfdPath(), image.MemfdInode, func() *memfd.MemfdInodeEntry { return new(memfd.MemfdInodeEntry) })
	if errors.Is(err, os.ErrNotExist) {
		return &MemfdImages{}, nil
	}
	if err != nil {
		return nil, err
	}
	m := &MemfdImages{Inodes: map[uint32]*memfd.MemfdInodeEntry{}, Pages: map[uint32]*mem.ShmemPages{}}
	for _, e := range all {
		ino := uint32(e.GetInodeId())
		m.Inodes[ino] = e
		if m.Pages[ino], err = mem.ReadShmemPages(dir, uint64(e.GetShmid())); err != nil {
			if !errors.Is(err, os.ErrNotExist) || e.GetSize() != 0 {
				return nil, fmt.Errorf("memfd %q: %w", e.GetName(), err)
			}
			m.Pages[ino] = &mem.ShmemPages{}
		}
	}
	return m, nil
}

// Memfds plans the memfds of one task, for its memory plan (MapFd) and
// its descriptor plan (Open), and ends them in its final section
// (Finish).
type Memfds struct {
	img     *MemfdImages
	files   Index
	safe    int
	holder  func(inodeID uint32) (Holder, bool)
	handles map[uint32]*memfdHandle // by inode id
	ro      map[uint32]int          // read-only descriptors for mappings, by inode id
}

// memfdHandle is a task's read-write descriptor of a memfd inode.
type memfdHandle struct {
	fd      int
	created bool   // made by memfd_create in this task
	given   bool   // its description went to a read-write file
	seals   uint32 // to add in Finish
}

// NewMemfds returns the memfd planner of a task: img are the dump's
// memfds, files its files.img, safe the lowest descriptor above every
// target and inherited one (SafeFd), from which handles are parked, and
// holder finds a task restored earlier that holds an inode.
func NewMemfds(img *MemfdImages, files Index, safe int, holder func(inodeID uint32) (Holder, bool)) *Memfds {
	return &Memfds{img: img, files: files, safe: safe, holder: holder,
		handles: map[uint32]*memfdHandle{}, ro: map[uint32]int{}}
}

// inodeOf returns the memfd inode id of MEMFD file id.
func (m *Memfds) inodeOf(fileID uint32) (uint32, error) {
	e, ok := m.files[fileID]
	if !ok || e.GetType() != fdinfo.FdTypes_MEMFD {
		return 0, fmt.Errorf("files.img has no memfd with id %d", fileID)
	}
	return e.GetMemfd().GetInodeId(), nil
}

// MapFd returns a parked descriptor of the memfd of file id fileID,
// opened with flags (a mapping's fdflags), for mapping it: read-only
// mappings are made through a read-only file, as the dumped ones were,
// so that they cannot become writable (nor stop a F_SEAL_WRITE).
func (m *Memfds) MapFd(b *plan.Builder, fileID, flags uint32) (int, error) {
	ino, err := m.inodeOf(fileID)
	if err != nil {
		return 0, err
	}
	h, err := m.handle(b, ino)
	if err != nil {
		return 0, err
	}
	if flags&unix.O_ACCMODE == unix.O_RDWR {
		return h.fd, nil
	}
	if fd, ok := m.ro[ino]; ok {
		return fd, nil
	}
	fd := b.Open(fmt.Sprintf("memfd %d read-only", ino), fmt.Sprintf("/proc/self/fd/%d", h.fd), unix.O_RDONLY, 0)
	m.ro[ino] = b.MoveAbove(fd, m.safe)
	return m.ro[ino], nil
}

// memfdSetfl are the status flags F_SETFL can give a file.
const memfdSetfl = unix.O_APPEND | unix.O_NONBLOCK | unix.O_NOATIME | unix.O_DIRECT

// Open plans opening memfd file e and returns a descriptor of it, at its
// position: the description memfd_create made for the first read-write
// file of an inode made here (as CRIU does, so that execveat of it still
// works), a reopen through /proc/self/fd/HANDLE for every other.
func (m *Memfds) Open(b *plan.Builder, e *fdinfo.FileEntry) (int, error) {
	mf := e.GetMemfd()
	h, err := m.handle(b, mf.GetInodeId())
	if err != nil {
		return 0, err
	}
	flags := mf.GetFlags()
	var fd int
	if h.created && !h.given && flags&unix.O_ACCMODE == unix.O_RDWR {
		h.given = true
		fd = b.CopyAbove(h.fd, 0)
		if fl := flags & memfdSetfl; fl != 0 {
			b.Call(fmt.Sprintf("set flags %#x on memfd file id %d", fl, e.GetId()), unix.SYS_FCNTL, uint64(fd), unix.F_SETFL, uint64(fl))
		}
	} else {
		fd = b.Open(fmt.Sprintf("memfd file id %d", e.GetId()), fmt.Sprintf("/proc/self/fd/%d", h.fd), int(flags&reopenFlags), 0)
	}
	if pos := mf.GetPos(); pos != 0 {
		b.Call(fmt.Sprintf("seek memfd file id %d to %d", e.GetId(), pos), unix.SYS_LSEEK, uint64(fd), pos, unix.SEEK_SET)
	}
	return fd, nil
}

// handle returns the task's handle of inode ino: one it has, a reopen of
// an earlier task's, or a new memfd.
func (m *Memfds) handle(b *plan.Builder, ino uint32) (*memfdHandle, error) {
	if h, ok := m.handles[ino]; ok {
		return h, nil
	}
	var h *memfdHandle
	if m.holder != nil {
		if hd, ok := m.holder(ino); ok {
			fd := b.Open(fmt.Sprintf("memfd %d of pid %d", ino, hd.Pid), fmt.Sprintf("/proc/%d/fd/%d", hd.Pid, hd.Fd), unix.O_RDWR, 0)
			h = &memfdHandle{fd: fd}
		}
	}
	if h == nil {
		var err error
		if h, err = m.create(b, ino); err != nil {
			return nil, err
		}
	}
	h.fd = b.MoveAbove(h.fd, m.safe)
	m.handles[ino] = h
	return h, nil
}

// create plans making memfd inode ino: memfd_create, contents, size,
// owner and mode; the seals wait for Finish.
func (m *Memfds) create(b *plan.Builder, ino uint32) (*memfdHandle, error) {
	var e *memfd.MemfdInodeEntry
	if m.img != nil {
		e = m.img.Inodes[ino]
	}
	if e == nil {
		return nil, fmt.Errorf("memfd.img has no inode %d", ino)
	}
	if e.GetHugetlbFlag() != 0 {
		return nil, fmt.Errorf("memfd %q: hugetlb memfds are not supported", e.GetName())
	}
	name := e.GetName()
	// A memfd made without MFD_ALLOW_SEALING has exactly F_SEAL_SEAL.
	flags, seals := uint64(unix.MFD_ALLOW_SEALING), e.GetSeals()
	if seals == unix.F_SEAL_SEAL {
		flags, seals = 0, 0
	}
	fd := b.Next()
	b.Call(fmt.Sprintf("create memfd %q as fd %d", name, fd), unix.SYS_MEMFD_CREATE, b.String(name), flags)
	b.Take()
	if p := m.img.Pages[ino]; p != nil {
		p.PlanWrite(b, fd, e.GetSize())
	}
	b.Call(fmt.Sprintf("size memfd %q to %d", name, e.GetSize()), unix.SYS_FTRUNCATE, uint64(fd), e.GetSize())
	b.Privileged(fmt.Sprintf("own memfd %q by %d:%d", name, e.GetUid(), e.GetGid()), unix.SYS_FCHOWN, uint64(fd), uint64(e.GetUid()), uint64(e.GetGid()))
	if e.Mode != nil {
		b.Call(fmt.Sprintf("mode %#o on memfd %q", e.GetMode()&0o7777, name), unix.SYS_FCHMOD, uint64(fd), uint64(e.GetMode()&0o7777))
	}
	return &memfdHandle{fd: fd, created: true, seals: seals}, nil
}

// Finish plans, for the final section, sealing the memfds the task made
// and closing every descriptor it parked.
func (m *Memfds) Finish(b *plan.Builder) {
	for _, ino := range slices.Sorted(maps.Keys(m.handles)) {
		h := m.handles[ino]
		if h.seals != 0 {
			b.Call(fmt.Sprintf("seal memfd %d with %#x", ino, h.seals), unix.SYS_FCNTL, uint64(h.fd), unix.F_ADD_SEALS, uint64(h.seals))
		}
	}
	for _, fd := range m.Fds() {
		b.Close(fd)
	}
}

// Fds lists the descriptors the planner has parked.
func (m *Memfds) Fds() []int {
	var out []int
	for _, h := range m.handles {
		out = append(out, h.fd)
	}
	for _, fd := range m.ro {
		out = append(out, fd)
	}
	slices.Sort(out)
	return out
}

// Held maps each memfd inode the task holds to its read-write handle,
// which stays open until the final section: tasks restored later reopen
// it there.
func (m *Memfds) Held() map[uint32]int {
	out := map[uint32]int{}
	for ino, h := range m.handles {
		out[ino] = h.fd
	}
	return out
}
