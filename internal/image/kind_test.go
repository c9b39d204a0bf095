package image_test

import (
	"os"
	"testing"

	"github.com/checkpoint-restore/go-criu/v8/crit"
	"github.com/checkpoint-restore/go-criu/v8/magic"

	"amber/internal/image"
)

// kinds lists every Kind of kind.go.
func kinds() []image.Kind {
	return []image.Kind{
		image.Inventory, image.Pstree, image.Core, image.IDs, image.MM,
		image.Pagemap, image.Files, image.Fdinfo, image.FS, image.Stats,
		image.SkQueues, image.FifoData, image.RemapFpath, image.GhostFile,
		image.TcpStream, image.TtyInfo, image.TtyData, image.Seccomp, image.Cgroup, image.FileLocks,
		image.Utsns, image.IpcVar, image.Netdev, image.Netns, image.Timens,
	}
}

// TestKindsMatchGoCriu: names and magics agree with go-criu's table, which
// is generated from CRIU's criu/include/magic.h.
func TestKindsMatchGoCriu(t *testing.T) {
	table := magic.LoadMagic()
	if got := table.ByName["IMG_COMMON"]; got != image.MagicCommon {
		t.Errorf("IMG_COMMON: go-criu %#x, amber %#x", got, image.MagicCommon)
	}
	if got := table.ByName["IMG_SERVICE"]; got != image.MagicService {
		t.Errorf("IMG_SERVICE: go-criu %#x, amber %#x", got, image.MagicService)
	}
	for _, k := range kinds() {
		want, ok := table.ByName[k.Name]
		if !ok {
			t.Errorf("%s: not in go-criu's magic table", k.Name)
			continue
		}
		if uint64(k.Magic) != want {
			t.Errorf("%s: amber %#x, go-criu %#x", k.Name, k.Magic, want)
		}
	}
}

// TestKindPrefixes: the inventory has no IMG_COMMON, stats are service
// images, everything else is common (as in crit's reader).
func TestKindPrefixes(t *testing.T) {
	for _, k := range kinds() {
		want := uint32(image.MagicCommon)
		switch k.Name {
		case "INVENTORY":
			want = 0
		case "STATS":
			want = image.MagicService
		}
		if k.Prefix != want {
			t.Errorf("%s: prefix %#x, want %#x", k.Name, k.Prefix, want)
		}
	}
}

// TestHeadersReadByCrit: go-criu's crit.ReadMagic names each header the
// writer produces after its kind.
func TestHeadersReadByCrit(t *testing.T) {
	dir := openTemp(t)
	for _, k := range kinds() {
		p := dir.File(k.Name + ".img")
		path := p.String()
		if err := image.WriteFile(p, k); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		name, err := crit.ReadMagic(f)
		f.Close()
		if err != nil || name != k.Name {
			t.Errorf("%s: crit reads %q, %v", k.Name, name, err)
		}
	}
}
