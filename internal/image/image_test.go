package image_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/reflect/protoregistry"

	criu_core "github.com/checkpoint-restore/go-criu/v8/crit/images/criu-core"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/fown"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/fs"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/inventory"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/mm"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/pagemap"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/pstree"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/regfile"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/stats"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/vma"
	"google.golang.org/protobuf/proto"

	"amber/internal/image"
)

func pstreeEntry(pid, ppid uint32, threads ...uint32) *pstree.PstreeEntry {
	return &pstree.PstreeEntry{Pid: proto.Uint32(pid), Ppid: proto.Uint32(ppid), Pgid: proto.Uint32(pid), Sid: proto.Uint32(1), Threads: threads}
}

func mmEntry(nvmas int) *mm.MmEntry {
	var z uint64
	e := &mm.MmEntry{
		MmStartCode: proto.Uint64(0x400000), MmEndCode: proto.Uint64(0x401000), MmStartData: &z, MmEndData: &z,
		MmStartStack: proto.Uint64(0x7ffd0000), MmStartBrk: &z, MmBrk: &z, MmArgStart: &z, MmArgEnd: &z,
		MmEnvStart: &z, MmEnvEnd: &z, ExeFileId: proto.Uint32(7), MmSavedAuxv: []uint64{33, 0x7fff1000, 0, 0},
	}
	for i := range nvmas {
		start := uint64(0x10000000 + i*0x2000)
		e.Vmas = append(e.Vmas, &vma.VmaEntry{
			Start: proto.Uint64(start), End: proto.Uint64(start + 0x1000), Pgoff: &z, Shmid: &z,
			Prot: proto.Uint32(3), Flags: proto.Uint32(0x22), Status: proto.Uint32(0x201), Fd: proto.Int64(-1),
		})
	}
	return e
}

func regFile(id uint32, name string) *fdinfo.FileEntry {
	var z uint32
	return &fdinfo.FileEntry{Type: fdinfo.FdTypes_REG.Enum(), Id: proto.Uint32(id), Reg: &regfile.RegFileEntry{
		Id: proto.Uint32(id), Flags: proto.Uint32(0o100000), Pos: proto.Uint64(0), Name: proto.String(name),
		Fown: &fown.FownEntry{Uid: &z, Euid: &z, Signum: &z, PidType: &z, Pid: &z},
	}}
}

// roundTrip cases: a kind and entries of its go-criu type.
func roundTripCases() []struct {
	name    string
	kind    image.Kind
	entries []proto.Message
	newMsg  func() proto.Message
} {
	type c = struct {
		name    string
		kind    image.Kind
		entries []proto.Message
		newMsg  func() proto.Message
	}
	return []c{
		{"inventory", image.Inventory, []proto.Message{&inventory.InventoryEntry{
			ImgVersion: proto.Uint32(2), FdinfoPerId: proto.Bool(true),
			RootIds: &criu_core.TaskKobjIdsEntry{VmId: proto.Uint32(1), FilesId: proto.Uint32(2), FsId: proto.Uint32(3), SighandId: proto.Uint32(4)},
		}}, func() proto.Message { return &inventory.InventoryEntry{} }},
		{"pstree", image.Pstree, []proto.Message{pstreeEntry(100, 0, 100, 101, 102), pstreeEntry(103, 100, 103)},
			func() proto.Message { return &pstree.PstreeEntry{} }},
		{"core", image.Core, []proto.Message{&criu_core.CoreEntry{Mtype: criu_core.CoreEntry_X86_64.Enum(),
			Tc: &criu_core.TaskCoreEntry{TaskState: proto.Uint32(1), ExitCode: proto.Uint32(0), Personality: proto.Uint32(0),
				Flags: proto.Uint32(0), BlkSigset: proto.Uint64(0), Comm: proto.String("sleep")}}},
			func() proto.Message { return &criu_core.CoreEntry{} }},
		{"mm", image.MM, []proto.Message{mmEntry(3000)}, func() proto.Message { return &mm.MmEntry{} }},
		{"pagemap", image.Pagemap, []proto.Message{
			&pagemap.PagemapHead{PagesId: proto.Uint32(1)},
			&pagemap.PagemapEntry{Vaddr: proto.Uint64(0x400000), CompatNrPages: proto.Uint32(3), NrPages: proto.Uint64(3)},
		}, nil},
		{"files", image.Files, []proto.Message{regFile(1, "/bin/sleep"), regFile(2, "/dev/null")},
			func() proto.Message { return &fdinfo.FileEntry{} }},
		{"fdinfo", image.Fdinfo, []proto.Message{&fdinfo.FdinfoEntry{Id: proto.Uint32(2), Flags: proto.Uint32(0), Type: fdinfo.FdTypes_REG.Enum(), Fd: proto.Uint32(0)}},
			func() proto.Message { return &fdinfo.FdinfoEntry{} }},
		{"fs", image.FS, []proto.Message{&fs.FsEntry{CwdId: proto.Uint32(1), RootId: proto.Uint32(2), Umask: proto.Uint32(0o22)}},
			func() proto.Message { return &fs.FsEntry{} }},
		{"stats", image.Stats, []proto.Message{&stats.StatsEntry{Restore: &stats.RestoreStatsEntry{
			PagesCompared: proto.Uint64(0), PagesSkippedCow: proto.Uint64(0), ForkingTime: proto.Uint32(5), RestoreTime: proto.Uint32(9)}}},
			func() proto.Message { return &stats.StatsEntry{} }},
		{"empty pstree", image.Pstree, nil, func() proto.Message { return &pstree.PstreeEntry{} }},
	}
}

func TestRoundTrip(t *testing.T) {
	dir := openTemp(t)
	for _, tc := range roundTripCases() {
		t.Run(tc.name, func(t *testing.T) {
			p := dir.File(tc.name + ".img")
			path := p.String()
			if err := image.WriteFile(p, tc.kind, tc.entries...); err != nil {
				t.Fatal(err)
			}
			checkHeader(t, path, tc.kind)
			got := readAll(t, path, tc.kind, tc.entries, tc.newMsg)
			if len(got) != len(tc.entries) {
				t.Fatalf("read %d entries, wrote %d", len(got), len(tc.entries))
			}
			for i := range got {
				if !proto.Equal(got[i], tc.entries[i]) {
					t.Errorf("entry %d: read %v, wrote %v", i, got[i], tc.entries[i])
				}
			}
		})
	}
}

// readAll reads entries back with a fresh message per entry: newMsg's,
// or (pagemap: a head, then entries) one like the entry written there.
func readAll(t *testing.T, path string, kind image.Kind, wrote []proto.Message, newMsg func() proto.Message) []proto.Message {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := image.NewReader(f, path, kind)
	if err != nil {
		t.Fatal(err)
	}
	var out []proto.Message
	for i := 0; ; i++ {
		var m proto.Message
		switch {
		case newMsg != nil:
			m = newMsg()
		case i < len(wrote):
			m = wrote[i].ProtoReflect().New().Interface()
		default:
			m = &pagemap.PagemapEntry{}
		}
		err := r.Next(m)
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
}

// checkHeader: the file starts with the prefix magic (if any) and the
// kind's magic, little-endian.
func checkHeader(t *testing.T, path string, kind image.Kind) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var want []byte
	if kind.Prefix != 0 {
		want = binary.LittleEndian.AppendUint32(want, kind.Prefix)
	}
	want = binary.LittleEndian.AppendUint32(want, kind.Magic)
	if !bytes.HasPrefix(b, want) {
		t.Errorf("%s starts with %x, want %x", path, b[:min(len(b), 8)], want)
	}
}

func TestReadFileAndReadOne(t *testing.T) {
	dir := openTemp(t)
	path := dir.PstreePath()
	if err := image.WriteFile(path, image.Pstree, pstreeEntry(1, 0, 1), pstreeEntry(2, 1, 2)); err != nil {
		t.Fatal(err)
	}
	all, err := image.ReadFile(path, image.Pstree, func() *pstree.PstreeEntry { return &pstree.PstreeEntry{} })
	if err != nil || len(all) != 2 || all[1].GetPid() != 2 {
		t.Fatalf("ReadFile = %v, %v", all, err)
	}
	_, err = image.ReadOne(path, image.Pstree, func() *pstree.PstreeEntry { return &pstree.PstreeEntry{} })
	if err == nil || !strings.Contains(err.Error(), "want 1 entry, found 2") || !strings.Contains(err.Error(), path.String()) {
		t.Errorf("ReadOne of 2 entries = %v", err)
	}
	if err := image.WriteFile(dir.FSPath(1), image.FS, &fs.FsEntry{CwdId: proto.Uint32(1), RootId: proto.Uint32(1)}); err != nil {
		t.Fatal(err)
	}
	one, err := image.ReadOne(dir.FSPath(1), image.FS, func() *fs.FsEntry { return &fs.FsEntry{} })
	if err != nil || one.GetRootId() != 1 {
		t.Errorf("ReadOne = %v, %v", one, err)
	}
}

// TestManyEntries crosses the reader's and writer's 64 KiB buffers.
func TestManyEntries(t *testing.T) {
	path := openTemp(t).PstreePath()
	w, err := image.Create(path, image.Pstree)
	if err != nil {
		t.Fatal(err)
	}
	const n = 20000
	for i := range n {
		if err := w.Write(pstreeEntry(uint32(i+1), uint32(i), uint32(i+1))); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	all, err := image.ReadFile(path, image.Pstree, func() *pstree.PstreeEntry { return &pstree.PstreeEntry{} })
	if err != nil || len(all) != n || all[n-1].GetPid() != n {
		t.Fatalf("read %d entries, err %v", len(all), err)
	}
}

func le32(vs ...uint32) []byte {
	var b []byte
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint32(b, v)
	}
	return b
}

func TestReaderErrors(t *testing.T) {
	entry, _ := proto.Marshal(pstreeEntry(1, 0, 1))
	hdr := le32(image.MagicCommon, image.Pstree.Magic)
	withEntry := append(append(append([]byte{}, hdr...), le32(uint32(len(entry)))...), entry...)
	tests := []struct {
		name   string
		data   []byte
		atOpen bool     // NewReader fails, not Next
		is     error    // errors.Is target, if any
		want   []string // in the message
	}{
		{"empty file", nil, true, io.ErrUnexpectedEOF, []string{"read magic"}},
		{"short magic", hdr[:6], true, io.ErrUnexpectedEOF, []string{"read magic"}},
		{"wrong magic", le32(image.MagicCommon, image.MM.Magic), true, image.ErrBadMagic, []string{"wrong magic", "PSTREE"}},
		{"inventory magic", le32(image.Inventory.Magic, image.Pstree.Magic), true, image.ErrBadMagic, []string{"PSTREE"}},
		{"service prefix", le32(image.MagicService, image.Pstree.Magic), true, image.ErrBadMagic, nil},
		{"truncated length", append(append([]byte{}, withEntry...), 5, 0), false, io.ErrUnexpectedEOF, []string{"entry 1", "truncated length"}},
		{"truncated entry", withEntry[:len(withEntry)-1], false, io.ErrUnexpectedEOF, []string{"entry 0", "truncated", "bytes announced"}},
		{"length only", append(append([]byte{}, hdr...), le32(100)...), false, io.ErrUnexpectedEOF, []string{"entry 0", "(100 bytes announced)"}},
		{"oversize length", append(append([]byte{}, hdr...), le32(image.MaxEntrySize+1)...), false, nil, []string{"entry 0", "exceeds", "corrupted"}},
		{"max length", append(append([]byte{}, hdr...), le32(0xffffffff)...), false, nil, []string{"4294967295", "exceeds"}},
		{"bad protobuf", append(append([]byte{}, hdr...), append(le32(3), 0xff, 0xff, 0xff)...), false, nil, []string{"entry 0", "decode *pstree.PstreeEntry"}},
		{"missing required", append(append([]byte{}, hdr...), append(le32(2), 8, 1)...), false, nil, []string{"entry 0", "decode", "required"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const path = "/images/pstree.img"
			err := readErr(tt.data, path, tt.atOpen)
			if err == nil {
				t.Fatal("no error")
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %q is not %v", err, tt.is)
			}
			for _, w := range append(tt.want, path) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

// readErr opens data as a pstree image and reads entries until an error;
// atOpen says the error must come from NewReader.
func readErr(data []byte, path string, atOpen bool) error {
	r, err := image.NewReader(bytes.NewReader(data), path, image.Pstree)
	if err != nil || atOpen {
		if err == nil {
			return errors.New("NewReader accepted the header")
		}
		return err
	}
	for {
		if err := r.Next(&pstree.PstreeEntry{}); err != nil {
			if err == io.EOF {
				return errors.New("clean EOF")
			}
			return err
		}
	}
}

func TestNextAtEOF(t *testing.T) {
	r, err := image.NewReader(bytes.NewReader(le32(image.MagicCommon, image.Pstree.Magic)), "p", image.Pstree)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := r.Next(&pstree.PstreeEntry{}); err != io.EOF {
			t.Errorf("Next on an empty image = %v, want io.EOF itself", err)
		}
	}
}

func TestCreateErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "no", "such", "dir")
	if _, err := image.OpenDir(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("OpenDir of a missing directory = %v", err)
	}
	dst := openTemp(t).PstreePath()
	bad := &pstree.PstreeEntry{Pid: proto.Uint32(1)} // ppid, pgid, sid missing
	if err := image.WriteFile(dst, image.Pstree, bad); err == nil || !strings.Contains(err.Error(), dst.String()) {
		t.Errorf("WriteFile of an incomplete entry = %v", err)
	}
}

func TestDirNames(t *testing.T) {
	d := image.DirAt("/img")
	for got, want := range map[image.Path]string{
		d.InventoryPath():    "/img/inventory.img",
		d.PstreePath():       "/img/pstree.img",
		d.FilesPath():        "/img/files.img",
		d.CorePath(12):       "/img/core-12.img",
		d.IDsPath(12):        "/img/ids-12.img",
		d.MMPath(12):         "/img/mm-12.img",
		d.PagemapPath(12):    "/img/pagemap-12.img",
		d.PagesPath(3):       "/img/pages-3.img",
		d.FdinfoPath(4):      "/img/fdinfo-4.img",
		d.FSPath(12):         "/img/fs-12.img",
		d.StatsDumpPath():    "/img/stats-dump",
		d.StatsRestorePath(): "/img/stats-restore",
	} {
		if got.String() != want || got.Resolved() != want {
			t.Errorf("got %s (resolved %s), want %s", got, got.Resolved(), want)
		}
		if !image.IsDumpFile(got.Name()) {
			t.Errorf("%s is not known as an image name", got.Name())
		}
	}
}

// TestWarm checks that the image types are where Warm looks for them,
// and that an image still reads after it.
func TestWarm(t *testing.T) {
	image.Warm()
	name := (&criu_core.CoreEntry{}).ProtoReflect().Descriptor().FullName()
	if _, err := protoregistry.GlobalTypes.FindMessageByName(name); err != nil {
		t.Fatalf("%s is not registered where Warm looks: %v", name, err)
	}
	d, err := image.OpenDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	want := &criu_core.CoreEntry{Mtype: criu_core.CoreEntry_X86_64.Enum()}
	if err := image.WriteFile(d.CorePath(1), image.Core, want); err != nil {
		t.Fatal(err)
	}
	got, err := image.ReadOne(d.CorePath(1), image.Core, func() *criu_core.CoreEntry { return &criu_core.CoreEntry{} })
	if err != nil || got.GetMtype() != want.GetMtype() {
		t.Fatalf("read back %v, %v", got, err)
	}
}
