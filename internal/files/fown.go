package files

// File owners: the process or group a file signals on I/O (F_SETOWN,
// F_SETOWN_EX), the signal it sends (F_SETSIG) and O_ASYNC, kept in the
// FownEntry of each kind of file entry, as CRIU does.

import (
	"fmt"
	"unsafe"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/fown"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"amber/internal/plan"
)

// fGetOwnerUids is F_GETOWNER_UIDS: the real and effective uid the owner
// was set with (CONFIG_CHECKPOINT_RESTORE).
const fGetOwnerUids = 17

// asyncSettable are the flags F_SETFL sets.
const asyncSettable = unix.O_APPEND | unix.O_ASYNC | unix.O_DIRECT | unix.O_NOATIME | unix.O_NONBLOCK

// fileKind returns the kind-specific message of e that holds its fown
// and flags (nil if its kind has no owner).
func fileKind(e *fdinfo.FileEntry) protoreflect.Message {
	var out protoreflect.Message
	if e == nil {
		return nil
	}
	e.ProtoReflect().Range(func(f protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if f.Kind() != protoreflect.MessageKind || f.IsList() || f.IsMap() {
			return true
		}
		if m := v.Message(); m.Descriptor().Fields().ByName("fown") != nil {
			out = m
			return false
		}
		return true
	})
	return out
}

// fileFown returns e's owner entry and file flags (nil: none).
func fileFown(e *fdinfo.FileEntry) (*fown.FownEntry, uint32) {
	if r := e.GetReg(); r != nil {
		// Most files of a large table are regular: spare them the
		// reflection below, which showed in the profile of a dump of
		// 10,000 files.
		return r.GetFown(), r.GetFlags()
	}
	m := fileKind(e)
	if m == nil {
		return nil, 0
	}
	fields := m.Descriptor().Fields()
	fo, _ := m.Get(fields.ByName("fown")).Message().Interface().(*fown.FownEntry)
	var flags uint32
	if f := fields.ByName("flags"); f != nil && f.Kind() == protoreflect.Uint32Kind {
		flags = uint32(m.Get(f).Uint())
	}
	return fo, flags
}

// readFown fills fo with the owner of the file open at fd in amber (a
// copy of the task's, taken with pidfd_getfd: the same open file).
func readFown(fd int, fo *fown.FownEntry) error {
	var owner [2]int32 // struct f_owner_ex: type, pid
	if _, _, e := unix.Syscall(unix.SYS_FCNTL, uintptr(fd), unix.F_GETOWN_EX, uintptr(unsafe.Pointer(&owner[0]))); e != 0 {
		return fmt.Errorf("F_GETOWN_EX: %w", e)
	}
	fo.PidType, fo.Pid, fo.Signum = proto.Uint32(uint32(owner[0])), proto.Uint32(uint32(owner[1])), proto.Uint32(0)
	if owner[1] == 0 {
		// No owner, no signal to send: F_GETSIG is left out, as CRIU
		// does, for it costs a call per file of a table of thousands
		// (a signal set before any owner is lost, in CRIU's too).
		return nil
	}
	sig, err := unix.FcntlInt(uintptr(fd), unix.F_GETSIG, 0)
	if err != nil {
		return fmt.Errorf("F_GETSIG: %w", err)
	}
	fo.Signum = proto.Uint32(uint32(sig))
	var uids [2]uint32
	if _, _, e := unix.Syscall(unix.SYS_FCNTL, uintptr(fd), fGetOwnerUids, uintptr(unsafe.Pointer(&uids[0]))); e != 0 {
		return fmt.Errorf("F_GETOWNER_UIDS: %w", e)
	}
	fo.Uid, fo.Euid = proto.Uint32(uids[0]), proto.Uint32(uids[1])
	return nil
}

// ownerOf reads the owner of the file at fd of the task behind pidfd,
// through a copy of the descriptor.
func ownerOf(pidfd, fd int) (*fown.FownEntry, error) {
	mine, err := unix.PidfdGetfd(pidfd, fd, 0)
	if err != nil {
		return nil, fmt.Errorf("pidfd_getfd: %w", err)
	}
	defer unix.Close(mine)
	fo := &fown.FownEntry{}
	if err := readFown(mine, fo); err != nil {
		return nil, err
	}
	return fo, nil
}

// dumpFown records the owner of file id, open at fd of the task behind
// pidfd: read, if read is not nil, else read now.
func (d *Dumper) dumpFown(pidfd, fd int, id uint32, read *fown.FownEntry) error {
	fo, flags := fileFown(d.Table.entries[id-1])
	if fo == nil || flags&unix.O_PATH != 0 {
		return nil // an O_PATH file has no owner (fcntl says EBADF)
	}
	if read == nil {
		var err error
		if read, err = ownerOf(pidfd, fd); err != nil {
			return err
		}
	}
	mergeFown(fo, read)
	d.translateOwner(fo)
	return nil
}

// mergeFown sets the fields of fo that read has: the uids only if there
// is an owner. It is proto.Merge for this one message, without the
// reflection, which cost a few percent of a dump of 10,000 files.
func mergeFown(fo, read *fown.FownEntry) {
	for _, f := range []struct{ dst, src **uint32 }{
		{&fo.Uid, &read.Uid}, {&fo.Euid, &read.Euid}, {&fo.Signum, &read.Signum},
		{&fo.PidType, &read.PidType}, {&fo.Pid, &read.Pid},
	} {
		if *f.src != nil {
			*f.dst = proto.Uint32(**f.src)
		}
	}
}

// translateOwner writes the owner's PID as the images have it.
func (d *Dumper) translateOwner(fo *fown.FownEntry) {
	if d.pidOf != nil && fo.GetPid() != 0 {
		fo.Pid = proto.Uint32(uint32(d.pidOf(int(fo.GetPid()))))
	}
}

// SetPidMap makes the dumper write the PIDs it finds (owners of files)
// as of says: the tree's own pid namespace's, where amber sees its own.
func (d *Dumper) SetPidMap(of func(pid int) int) { d.pidOf = of }

// ownedFd is a descriptor of a file with an owner, a signal or O_ASYNC.
type ownedFd struct {
	fd    int
	fown  *fown.FownEntry
	flags uint32
}

// owned lists, once per file, the descriptors of the table whose files
// have an owner, a signal or O_ASYNC.
func (p *fdPlanner) owned(fds []*fdinfo.FdinfoEntry) []ownedFd {
	var out []ownedFd
	done := map[uint32]bool{}
	for _, f := range fds {
		id := f.GetId()
		if done[id] {
			continue
		}
		done[id] = true
		fo, flags := fileFown(p.in.Files[id])
		if fo.GetPid() != 0 || fo.GetSignum() != 0 || flags&unix.O_ASYNC != 0 {
			out = append(out, ownedFd{int(f.GetFd()), fo, flags})
		}
	}
	return out
}

// PlanOwners plans giving the files of t their owner, signal and O_ASYNC
// back. It runs once every task of the tree exists (F_SETOWN_EX wants
// the owner to) and has its credentials: the kernel records those of
// the caller as the owner's uid and euid, which decide whether the file
// may signal the owner. They are the task's, not necessarily the dumped
// ones of whoever set the owner.
func PlanOwners(b *plan.Builder, t *Restored) {
	for _, o := range t.owned {
		planOwner(b, o.fd, o.fown, o.flags)
	}
}

func planOwner(b *plan.Builder, fd int, fo *fown.FownEntry, flags uint32) {
	if sig := fo.GetSignum(); sig != 0 {
		b.Call(fmt.Sprintf("fd %d signals with %d", fd, sig), unix.SYS_FCNTL, uint64(fd), unix.F_SETSIG, uint64(sig))
	}
	if pid := fo.GetPid(); pid != 0 {
		b.Call(fmt.Sprintf("fd %d owned by %d (type %d)", fd, pid, fo.GetPidType()), unix.SYS_FCNTL, uint64(fd), unix.F_SETOWN_EX, b.Bytes(ownerEx(fo)))
	}
	if flags&unix.O_ASYNC != 0 {
		b.Call(fmt.Sprintf("set O_ASYNC on fd %d", fd), unix.SYS_FCNTL, uint64(fd), unix.F_SETFL, uint64(flags&asyncSettable))
	}
}
