package files

import (
	"testing"

	criucore "github.com/checkpoint-restore/go-criu/v8/crit/images/criu-core"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/ns"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/regfile"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
)

// TestOpenHostNs: among thousands of other files, amber opens its own
// namespace once for each namespace file of the dumper's (two files of
// its net namespace share one descriptor), and none for a namespace of
// the tree's or a file of an unknown kind.
func TestOpenHostNs(t *testing.T) {
	idx := Index{}
	for i := uint32(1); i <= 3000; i++ {
		idx[i] = &fdinfo.FileEntry{Type: fdinfo.FdTypes_REG.Enum(), Id: proto.Uint32(i),
			Reg: &regfile.RegFileEntry{Id: proto.Uint32(i), Name: proto.String("/f")}}
	}
	nsf := func(id, nsID uint32, flag uint32) {
		idx[id] = &fdinfo.FileEntry{Type: fdinfo.FdTypes_NS.Enum(), Id: proto.Uint32(id),
			Nsf: &ns.NsFileEntry{Id: proto.Uint32(id), NsId: proto.Uint32(nsID), NsCflag: proto.Uint32(flag), Flags: proto.Uint32(0)}}
	}
	nsf(4001, 7, unix.CLONE_NEWNET)  // the dumper's net namespace
	nsf(4002, 7, unix.CLONE_NEWNET)  // the same again
	nsf(4003, 8, unix.CLONE_NEWUTS)  // the tree's own uts namespace
	nsf(4004, 9, 0x1)                // no kind amber knows
	nsf(4005, 10, unix.CLONE_NEWIPC) // the dumper's ipc namespace
	root := &criucore.TaskKobjIdsEntry{NetNsId: proto.Uint32(7), UtsNsId: proto.Uint32(5), IpcNsId: proto.Uint32(10)}
	h, err := OpenHostNs(idx, root)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if len(h.Fds) != 2 {
		t.Fatalf("OpenHostNs opened %v, want namespaces 7 and 10", h.Fds)
	}
	for id, name := range map[uint32]string{7: "net", 10: "ipc"} {
		fd, ok := h.Fds[id]
		if !ok {
			t.Fatalf("namespace %d (%s) not opened: %v", id, name, h.Fds)
		}
		var got, want unix.Stat_t
		if err := unix.Fstat(fd, &got); err != nil {
			t.Fatal(err)
		}
		if err := unix.Stat("/proc/self/ns/"+name, &want); err != nil {
			t.Fatal(err)
		}
		if got.Ino != want.Ino || got.Dev != want.Dev {
			t.Errorf("namespace %d: fd %d is not amber's %s namespace", id, fd, name)
		}
	}
}
