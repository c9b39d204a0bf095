package files

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fsnotify"
)

// rootMount is the id and mount point of the first mount of this
// process's mountinfo.
func rootMount(t *testing.T) (int, string) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		t.Fatal("empty mountinfo")
	}
	w := strings.Fields(sc.Text())
	id, err := strconv.Atoi(w[0])
	if err != nil {
		t.Fatal(err)
	}
	return id, w[4]
}

// TestParseFanotify reads the group line and a mount mark of fdinfo
// into a FanotifyFileEntry, the mark with its mount point; a filesystem
// mark and a mount that does not exist are refused, naming why.
func TestParseFanotify(t *testing.T) {
	id, point := rootMount(t)
	ffe := &fsnotify.FanotifyFileEntry{}
	for _, line := range []string{
		"fanotify flags:12 event-flags:8000",
		fmt.Sprintf("fanotify mnt_id:%x mflags:40 mask:40000038 ignored_mask:3", id),
	} {
		if err := parseFanotifyLine(nil, os.Getpid(), ffe, fdinfoFields(line)); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
	}
	if ffe.GetFaflags() != 0x12 || ffe.GetEvflags() != 0x8000 || len(ffe.Mark) != 1 {
		t.Fatalf("got %v", ffe)
	}
	m := ffe.Mark[0]
	if m.GetType() != fsnotify.MarkType_MOUNT || m.GetMflags() != 0x40 || m.GetMask() != 0x40000038 || m.GetIgnoredMask() != 3 ||
		m.GetMe().GetMntId() != uint32(id) || m.GetMe().GetPath() != point {
		t.Errorf("mount mark %v; want mount %d at %s", m, id, point)
	}
	for line, want := range map[string]string{
		"fanotify sdev:fe00000 mflags:0 mask:3b ignored_mask:0":       "filesystem mark",
		"fanotify mnt_id:7fffffff mflags:0 mask:3b ignored_mask:0":    "no mount",
		"fanotify ino:5 sdev:fe00000 mflags:0 mask:3b ignored_mask:0": "no file handle",
		"fanotify mnt_id:1 mflags:zz mask:3b ignored_mask:0":          "mflags",
	} {
		if err := parseFanotifyLine(nil, os.Getpid(), &fsnotify.FanotifyFileEntry{}, fdinfoFields(line)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v; want an error naming %q", line, err, want)
		}
	}
}
