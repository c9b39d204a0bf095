package mem

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/vma"
	"golang.org/x/sys/unix"

	"amber/internal/plan"
	"amber/internal/proc"
)

// socketVMA is the rings of packet socket file id, as the dump records
// them: the entry names the socket's inode until NameSocketMaps.
func socketVMA(t *testing.T, start, pages uint64, ino uint64, id uint32, shared bool) *vma.VmaEntry {
	t.Helper()
	v := proc.VMA{Start: start, End: start + pages*page, Prot: rw, Path: fmt.Sprintf("socket:[%d]", ino), Inode: ino, Shared: shared}
	out, err := Entries([]proc.VMA{v}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := out[0].GetShmid(); got != ino {
		t.Fatalf("shmid %d before NameSocketMaps, want the inode %d", got, ino)
	}
	if err := NameSocketMaps(out, func(i uint32) (uint32, error) {
		if uint64(i) != ino {
			return 0, fmt.Errorf("asked for inode %d", i)
		}
		return id, nil
	}); err != nil {
		t.Fatal(err)
	}
	return out[0]
}

// A socket's rings between two anonymous VMAs: the memory plan keeps
// their range with an inaccessible placeholder, neither filled nor
// protected nor mapped with its neighbours, and PlanSocketMaps maps the
// socket there from the descriptor that holds it.
func TestPlanSocketRings(t *testing.T) {
	const a, s, c = 0x1000_0000, 0x1000_2000, 0x1000_6000
	sock := socketVMA(t, s, 4, 4242, 7, true)
	if sock.GetStatus() != StatusRegular|StatusSocket || sock.GetFlags() != unix.MAP_SHARED || sock.GetShmid() != 7 {
		t.Fatalf("socket vma: status %#x flags %#x shmid %d", sock.GetStatus(), sock.GetFlags(), sock.GetShmid())
	}
	vmas := append([]*vma.VmaEntry{anonVMA(a, 2, rw), sock, anonVMA(c, 2, rw)}, dumpedVdso(dumpVdso)...)
	_, p := planMem(t, memInput(vmas, nil))
	var at []string
	for _, call := range p.Calls {
		if call.Args[0] >= s && call.Args[0] < c || call.Nr == unix.SYS_MMAP && call.Args[0] == a && call.Args[1] != 2*page {
			at = append(at, fmt.Sprintf("%s %#x %#x %#x %#x", plan.SyscallName(call.Nr), call.Args[1], call.Args[2], call.Args[3], call.Args[4]))
		}
	}
	want := []string{fmt.Sprintf("mmap %#x %#x %#x %#x", 4*page, unix.PROT_NONE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_FIXED|unix.MAP_NORESERVE, ^uint64(0))}
	if !slices.Equal(at, want) {
		t.Errorf("calls at the rings %q, want only %q", at, want)
	}

	b := plan.NewBuilder(testScratch, 0)
	fds := map[uint32]int{7: 5}
	fdOf := func(id uint32) (int, bool) { fd, ok := fds[id]; return fd, ok }
	if err := PlanSocketMaps(b, vmas, fdOf); err != nil {
		t.Fatal(err)
	}
	calls := b.Finish().Calls
	if len(calls) != 1 || calls[0].Nr != unix.SYS_MMAP ||
		!slices.Equal(calls[0].Args[:6], []uint64{s, 4 * page, rw, unix.MAP_SHARED | unix.MAP_FIXED, 5, 0}) {
		t.Errorf("PlanSocketMaps: %v, want one mmap of fd 5 at %#x", calls, s)
	}
	delete(fds, 7)
	if err := PlanSocketMaps(plan.NewBuilder(testScratch, 0), vmas, fdOf); err == nil || !strings.Contains(err.Error(), "file id 7") {
		t.Errorf("rings of a socket no descriptor holds: %v, want an error naming file id 7", err)
	}
	if forkKeeps(sock) {
		t.Error("a forked child keeps its parent's mapping of the rings; it must map its own")
	}
}

// A socket mapping whose socket the dump did not name fails the dump
// with the vma and the inode.
func TestNameSocketMapsUnknown(t *testing.T) {
	out, err := Entries([]proc.VMA{{Start: 0x1000_0000, End: 0x1000_1000, Prot: rw, Path: "socket:[99]", Inode: 99}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = NameSocketMaps(out, func(uint32) (uint32, error) { return 0, fmt.Errorf("no packet socket") })
	if err == nil || !strings.Contains(err.Error(), "vma 10000000-10001000 maps socket:[99]") {
		t.Errorf("got %v, want an error naming the vma and socket:[99]", err)
	}
}
