package mem

// The rings of a packet socket mapped in memory (PACKET_RX_RING,
// PACKET_TX_RING): a VMA_AREA_SOCKET VMA names the socket by its file id
// (shmid), as CRIU's does. Its frames are not saved; the restore makes
// the socket with its rings (package sockets), then maps them again from
// it, once the process's descriptors are in place: until then a
// placeholder keeps the range.

import (
	"fmt"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/vma"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/plan"
)

func isSocketVMA(v *vma.VmaEntry) bool { return v.GetStatus()&StatusSocket != 0 }

// NameSocketMaps gives each socket VMA of vmas, whose shmid holds the
// socket's inode (Backing.Entries), the socket's file id: idOf returns
// it for an inode of a socket the process holds a descriptor of.
func NameSocketMaps(vmas []*vma.VmaEntry, idOf func(ino uint32) (uint32, error)) error {
	for _, v := range vmas {
		if !isSocketVMA(v) {
			continue
		}
		id, err := idOf(uint32(v.GetShmid()))
		if err != nil {
			return fmt.Errorf("%s maps socket:[%d]: %w", vmaName(v), v.GetShmid(), err)
		}
		v.Shmid = proto.Uint64(uint64(id))
	}
	return nil
}

// planSocketPlaceholder keeps the range of socket VMA v until
// PlanSocketMaps maps the socket there.
func planSocketPlaceholder(b *plan.Builder, v *vma.VmaEntry) {
	b.Call("keep the range of a socket's rings", unix.SYS_MMAP, v.GetStart(), v.GetEnd()-v.GetStart(), unix.PROT_NONE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_FIXED|unix.MAP_NORESERVE, ^uint64(0), 0)
}

// PlanSocketMaps maps the rings of the packet sockets the VMAs of vmas
// name, once the process's descriptors are in place: fdOf returns a
// descriptor of the process that holds file id.
func PlanSocketMaps(b *plan.Builder, vmas []*vma.VmaEntry, fdOf func(id uint32) (int, bool)) error {
	for _, v := range vmas {
		if !isSocketVMA(v) {
			continue
		}
		fd, ok := fdOf(uint32(v.GetShmid()))
		if !ok {
			return fmt.Errorf("%s maps the rings of packet socket (file id %d), which no descriptor of the process holds", vmaName(v), v.GetShmid())
		}
		b.Call("map the rings of a packet socket", unix.SYS_MMAP, v.GetStart(), v.GetEnd()-v.GetStart(), uint64(v.GetProt()),
			uint64(v.GetFlags())|unix.MAP_FIXED, uint64(fd), v.GetPgoff())
		planMadvise(b, v)
	}
	return nil
}
