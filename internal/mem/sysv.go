package mem

import (
	"fmt"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/vma"
	"golang.org/x/sys/unix"
)

// SysV shared memory attachments. A shmat maps a whole segment; mprotect
// may split it into several VMAs, each with its offset in the segment.
// Restore attaches the segment (package ipc recreates it first) at the
// VMA with offset 0 and only changes the protection of the VMAs that
// continue it, as CRIU does. Attachments with holes (part of a segment
// unmapped) are refused at dump.

// shmExec is SHM_EXEC of linux/shm.h.
const shmExec = 0o100000

// sysvChain is the SysV attachment being restored.
type sysvChain struct {
	id         uint64
	start, end uint64 // the attachment's start, the end of its VMAs so far
	prot       uint64 // the protection shmat gave it
	ok         bool
}

// attachSysV restores VMA i, part of a SysV attachment, and returns the
// protection it got; PlanRestore sets the final one.
func (m *sharedMapper) attachSysV(i int) (uint64, error) {
	v := m.vmas[i]
	id, c := v.GetShmid(), &m.sysv
	if v.GetPgoff() != 0 {
		if !c.ok || c.id != id || c.end != v.GetStart() || v.GetPgoff() != v.GetStart()-c.start {
			return 0, fmt.Errorf("SysV shared memory %d: mapping at offset %#x does not continue an attachment: not supported", id, v.GetPgoff())
		}
		c.end = v.GetEnd()
		return c.prot, nil
	}
	flags, attached := sysvAttachFlags(m.vmas, i)
	m.b.Call(fmt.Sprintf("attach SysV shared memory %d at %#x", id, v.GetStart()), unix.SYS_SHMAT, id, v.GetStart(), flags)
	*c = sysvChain{id: id, start: v.GetStart(), end: v.GetEnd(), prot: attached, ok: true}
	return attached, nil
}

// sysvAttachFlags chooses the shmat flags for the attachment starting at
// VMA i, and the protection they give: read-only if the segment was
// attached so (its mappings' fdflags), executable if any of its VMAs is.
func sysvAttachFlags(vmas []*vma.VmaEntry, i int) (flags, prot uint64) {
	first := vmas[i]
	prot = unix.PROT_READ | unix.PROT_WRITE
	if first.Fdflags != nil && first.GetFdflags()&unix.O_ACCMODE == unix.O_RDONLY {
		flags, prot = unix.SHM_RDONLY, unix.PROT_READ
	}
	end := first.GetStart()
	for _, v := range vmas[i:] {
		if v.GetStart() != end || v.GetShmid() != first.GetShmid() || v.GetStatus()&StatusSysVIPC == 0 ||
			v.GetPgoff() != v.GetStart()-first.GetStart() {
			break
		}
		if v.GetProt()&unix.PROT_EXEC != 0 {
			flags |= shmExec
			prot |= unix.PROT_EXEC
		}
		end = v.GetEnd()
	}
	return flags, prot
}

// CheckSysVAttachments checks at dump that every attachment of a SysV
// segment among vmas is whole: VMAs from offset 0 on, back to back, up to
// the segment's size (sizes, by segment id) rounded up to its page size,
// which is what restore can make.
func CheckSysVAttachments(vmas []*vma.VmaEntry, sizes map[uint64]uint64) error {
	for i := 0; i < len(vmas); i++ {
		v := vmas[i]
		if v.GetStatus()&StatusSysVIPC == 0 {
			continue
		}
		id := v.GetShmid()
		if v.GetPgoff() != 0 {
			return fmt.Errorf("%s: SysV shared memory %d mapped from offset %#x without its start: not supported", vmaName(v), id, v.GetPgoff())
		}
		end := v.GetEnd()
		for i+1 < len(vmas) && vmas[i+1].GetStatus()&StatusSysVIPC != 0 && vmas[i+1].GetShmid() == id &&
			vmas[i+1].GetStart() == end && vmas[i+1].GetPgoff() == end-v.GetStart() {
			i++
			end = vmas[i].GetEnd()
		}
		page := HugePageSize(v.GetFlags())
		if want := (sizes[id] + page - 1) &^ (page - 1); end-v.GetStart() != want {
			return fmt.Errorf("%s: SysV shared memory %d attached over %#x bytes of its %#x: partly unmapped attachments are not supported", vmaName(v), id, end-v.GetStart(), want)
		}
	}
	return nil
}
