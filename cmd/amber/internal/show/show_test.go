package show

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	criu_core "github.com/checkpoint-restore/go-criu/v8/crit/images/criu-core"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/fs"
	ghost_file "github.com/checkpoint-restore/go-criu/v8/crit/images/ghost-file"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/inventory"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/mm"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/pagemap"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/pstree"
	tcp_stream "github.com/checkpoint-restore/go-criu/v8/crit/images/tcp-stream"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/vma"
	"github.com/checkpoint-restore/go-criu/v8/magic"
	"google.golang.org/protobuf/proto"

	"amber/internal/image"
)

// writeImages writes a small but complete-looking images directory.
func writeImages(t *testing.T, dir string) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	d, err := image.OpenDir(dir)
	must(err)
	defer d.Close()
	must(image.WriteFile(d.InventoryPath(), image.Inventory, &inventory.InventoryEntry{
		ImgVersion: proto.Uint32(2), FdinfoPerId: proto.Bool(true),
	}))
	must(image.WriteFile(d.PstreePath(), image.Pstree,
		&pstree.PstreeEntry{Pid: proto.Uint32(100), Ppid: proto.Uint32(0), Pgid: proto.Uint32(100), Sid: proto.Uint32(1), Threads: []uint32{100, 101}},
		&pstree.PstreeEntry{Pid: proto.Uint32(102), Ppid: proto.Uint32(100), Pgid: proto.Uint32(100), Sid: proto.Uint32(1), Threads: []uint32{102}},
	))
	must(image.WriteFile(d.CorePath(100), image.Core, &criu_core.CoreEntry{Mtype: criu_core.CoreEntry_X86_64.Enum()}))
	must(image.WriteFile(d.MMPath(100), image.MM, testMM()))
	must(image.WriteFile(d.PagemapPath(100), image.Pagemap,
		&pagemap.PagemapHead{PagesId: proto.Uint32(1)},
		&pagemap.PagemapEntry{Vaddr: proto.Uint64(0x400000), CompatNrPages: proto.Uint32(2), NrPages: proto.Uint64(2)},
	))
	must(image.WriteFile(d.FSPath(100), image.FS, &fs.FsEntry{CwdId: proto.Uint32(1), RootId: proto.Uint32(2)}))
	must(d.PagesPath(1).WriteFile(make([]byte, 8192)))
	must(os.WriteFile(filepath.Join(dir, "dump.log"), []byte("not an image\n"), 0o600))
}

func testMM() *mm.MmEntry {
	var z uint64
	return &mm.MmEntry{
		MmStartCode: proto.Uint64(0x400000), MmEndCode: &z, MmStartData: &z, MmEndData: &z,
		MmStartStack: &z, MmStartBrk: &z, MmBrk: &z, MmArgStart: &z, MmArgEnd: &z,
		MmEnvStart: &z, MmEnvEnd: &z, ExeFileId: proto.Uint32(3),
		Vmas: []*vma.VmaEntry{{
			Start: proto.Uint64(0x400000), End: proto.Uint64(0x402000), Pgoff: &z, Shmid: &z,
			Prot: proto.Uint32(5), Flags: proto.Uint32(2), Status: proto.Uint32(1), Fd: proto.Int64(-1),
		}},
	}
}

type shownImage struct {
	Magic   string           `json:"magic"`
	Entries []map[string]any `json:"entries"`
}

func TestFile(t *testing.T) {
	dir := t.TempDir()
	writeImages(t, dir)
	var out bytes.Buffer
	if err := Path(&out, filepath.Join(dir, "pstree.img")); err != nil {
		t.Fatal(err)
	}
	var img shownImage
	if err := json.Unmarshal(out.Bytes(), &img); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out.String())
	}
	if img.Magic != "PSTREE" || len(img.Entries) != 2 || img.Entries[1]["pid"] != 102.0 {
		t.Errorf("pstree shown as %+v", img)
	}
	if !strings.Contains(out.String(), "\n    \"entries\"") {
		t.Errorf("output is not indented:\n%s", out.String())
	}
}

func TestDir(t *testing.T) {
	dir := t.TempDir()
	writeImages(t, dir)
	var out bytes.Buffer
	if err := Path(&out, dir); err != nil {
		t.Fatal(err)
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(out.Bytes(), &all); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out.String())
	}
	want := map[string]string{
		"inventory.img": "INVENTORY", "pstree.img": "PSTREE", "core-100.img": "CORE",
		"mm-100.img": "MM", "pagemap-100.img": "PAGEMAP", "fs-100.img": "FS",
	}
	for name, magic := range want {
		var img shownImage
		if err := json.Unmarshal(all[name], &img); err != nil || img.Magic != magic {
			t.Errorf("%s: %v, magic %q, want %q", name, err, img.Magic, magic)
		}
	}
	var pages struct {
		Raw         string
		Size, Pages int64
	}
	if err := json.Unmarshal(all["pages-1.img"], &pages); err != nil || pages.Size != 8192 || pages.Pages != 2 ||
		!strings.Contains(pages.Raw, "page data") {
		t.Errorf("pages-1.img shown as %s", all["pages-1.img"])
	}
	if _, ok := all["dump.log"]; ok || len(all) != len(want)+1 {
		t.Errorf("members %d, want %d (no dump.log)", len(all), len(want)+1)
	}
}

// TestShowPagesFile: a pages image shown alone is raw page data with its
// size in pages, not an image of unknown magic 0x0.
func TestShowPagesFile(t *testing.T) {
	dir := t.TempDir()
	writeImages(t, dir)
	var out bytes.Buffer
	if err := Path(&out, filepath.Join(dir, "pages-1.img")); err != nil {
		t.Fatal(err)
	}
	var pages struct {
		Raw         string
		Size, Pages int64
	}
	if err := json.Unmarshal(out.Bytes(), &pages); err != nil || pages.Pages != 2 || pages.Size != 8192 ||
		!strings.Contains(pages.Raw, "page data") || !strings.Contains(pages.Raw, "no magic") {
		t.Errorf("show pages-1.img: %v\n%s", err, out.String())
	}
}

func TestDirKeepsGoing(t *testing.T) {
	dir := t.TempDir()
	writeImages(t, dir)
	bad := filepath.Join(dir, "fs-100.img")
	truncate(t, bad, 11)
	var out bytes.Buffer
	err := Dir(&out, dir)
	if err == nil || !strings.Contains(err.Error(), bad) {
		t.Fatalf("Dir = %v, want an error naming %s", err, bad)
	}
	var all map[string]map[string]any
	if err := json.Unmarshal(out.Bytes(), &all); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out.String())
	}
	if all["fs-100.img"]["error"] == nil || all["pstree.img"]["magic"] != "PSTREE" {
		t.Errorf("output %v", all)
	}
}

func truncate(t *testing.T, path string, n int64) {
	t.Helper()
	if err := os.Truncate(path, n); err != nil {
		t.Fatal(err)
	}
}

func TestDecodeErrors(t *testing.T) {
	le := binary.LittleEndian
	hdr := le.AppendUint32(le.AppendUint32(nil, image.MagicCommon), image.Pstree.Magic)
	tests := map[string]struct {
		data []byte
		want string
	}{
		"empty":            {nil, "read magic"},
		"half magic":       {le.AppendUint32(nil, image.MagicCommon), "read magic"},
		"unknown magic":    {le.AppendUint32(le.AppendUint32(nil, image.MagicCommon), 0x12345678), "unknown magic 0x12345678"},
		"truncated length": {append(hdr, 1, 0), "truncated length"},
		"oversize":         {le.AppendUint32(hdr, image.MaxEntrySize+1), "exceeds"},
		"truncated entry":  {append(le.AppendUint32(hdr, 10), 8, 1), "truncated (10 bytes announced)"},
		"garbage entry":    {append(le.AppendUint32(hdr, 2), 0xff, 0xff), "entry 0"},
		"missing required": {append(le.AppendUint32(hdr, 2), 8, 1), "required field"},
	}
	dir := t.TempDir()
	for name, tt := range tests {
		path := filepath.Join(dir, strings.ReplaceAll(name, " ", "-")+".img")
		if err := os.WriteFile(path, tt.data, 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Decode(path)
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: Decode = %v, want an error naming the file with %q", name, err, tt.want)
		}
	}
}

// TestDecodeRecoversPanic: a ghost file chunk announcing 2^62 bytes makes
// go-criu's decoder panic (makeslice); Decode must turn it into an error.
func TestDecodeRecoversPanic(t *testing.T) {
	ghost := image.Kind{Name: "GHOST_FILE", Magic: uint32(magic.LoadMagic().ByName["GHOST_FILE"]), Prefix: image.MagicCommon}
	d, err := image.OpenDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	p := d.File("ghost-file-1.img")
	path := p.String()
	err = image.WriteFile(p, ghost,
		&ghost_file.GhostFileEntry{Uid: proto.Uint32(0), Gid: proto.Uint32(0), Mode: proto.Uint32(0o100644), Chunks: proto.Bool(true)},
		&ghost_file.GhostChunkEntry{Len: proto.Uint64(1 << 62), Off: proto.Uint64(0)},
	)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Decode(path)
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "panicked") {
		t.Errorf("Decode = %v, want a recovered panic naming the file", err)
	}
}

// TestEntryTypes: every image kind of go-criu's magic table has a decoder,
// except the ones that are not images of entries.
func TestEntryTypes(t *testing.T) {
	notImages := map[string]bool{"IMG_COMMON": true, "IMG_SERVICE": true, "CRTOOLS_IMAGES_V1_1": true, "KDAT": true}
	for name := range magic.LoadMagic().ByName {
		if _, ok := entryType(name); !ok && !notImages[name] {
			t.Errorf("no entry type for %s", name)
		}
	}
}

func TestPathErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope")
	if err := Path(&bytes.Buffer{}, missing); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("Path(missing) = %v", err)
	}
	empty := t.TempDir()
	if err := Path(&bytes.Buffer{}, empty); err == nil || !strings.Contains(err.Error(), "no *.img") {
		t.Errorf("Path(empty dir) = %v", err)
	}
}

// TestShowTCPStream: a tcp-stream image, whose entry is followed by the
// connection's queued bytes, shows as JSON with those bytes in "extra"
// (go-criu's own marshaller made invalid JSON of it), in base64 as crit.
func TestShowTCPStream(t *testing.T) {
	dir := t.TempDir()
	d, err := image.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	in, out := []byte("received, not read"), []byte("written, not acknowledged")
	w, err := image.Create(d.File("tcp-stream-7.img"), image.TcpStream)
	if err != nil {
		t.Fatal(err)
	}
	e := &tcp_stream.TcpStreamEntry{InqLen: proto.Uint32(uint32(len(in))), InqSeq: proto.Uint32(1),
		OutqLen: proto.Uint32(uint32(len(out))), OutqSeq: proto.Uint32(2), OptMask: proto.Uint32(0),
		SndWscale: proto.Uint32(0), MssClamp: proto.Uint32(1460)}
	if err := w.WriteWithPayload(e, append(append([]byte(nil), in...), out...)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := File(&buf, filepath.Join(dir, "tcp-stream-7.img")); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Magic   string
		Entries []struct {
			InqLen int `json:"inq_len"`
			Extra  struct {
				InQ  []byte `json:"in_q"`
				OutQ []byte `json:"out_q"`
			}
		}
	}
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, buf.Bytes())
	}
	if len(got.Entries) != 1 || got.Entries[0].InqLen != len(in) || string(got.Entries[0].Extra.InQ) != string(in) || string(got.Entries[0].Extra.OutQ) != string(out) {
		t.Fatalf("shown as %s", buf.Bytes())
	}
}
