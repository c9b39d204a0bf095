package files

import (
	"os"
	"strings"
	"syscall"
	"testing"

	"amber/internal/proc"
)

// A tree in a mount namespace of its own: a file on a mount outside it
// is refused, naming the mount, but one on the kernel's internal shmem
// mount (in no namespace: shared anonymous memory opened through
// map_files) is the tree's.
func TestOnTreeMount(t *testing.T) {
	st, err := os.Stat(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	dev := st.Sys().(*syscall.Stat_t).Dev
	tree := map[int]bool{30: true}
	host := proc.FdInfo{MntID: 7}
	for _, c := range []struct {
		shmemDev uint64
		info     proc.FdInfo
		ok       bool
	}{
		{shmemDev: dev + 1, info: proc.FdInfo{MntID: 30}, ok: true},
		{shmemDev: dev + 1, info: host},
		{shmemDev: 0, info: host},
		{shmemDev: dev, info: host, ok: true},
	} {
		tbl := NewTable()
		tbl.SetRoot(nil, tree)
		d := NewDumper(tbl, DumpOptions{ShmemDev: c.shmemDev})
		err := d.onTreeMount("/dev/zero (deleted)", c.info, st)
		if c.ok != (err == nil) {
			t.Errorf("shmem dev %d (file's %d), mount %d: error %v, want ok %v", c.shmemDev, dev, c.info.MntID, err, c.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "mount 7") {
			t.Errorf("error %q does not name the mount", err)
		}
	}
}
