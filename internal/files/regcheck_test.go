package files

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/regfile"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
)

// timedInfo is a regular file of some size and modification time.
type timedInfo struct {
	fakeInfo
	mtime time.Time
}

func (f timedInfo) ModTime() time.Time { return f.mtime }

func TestFileCheck(t *testing.T) {
	dumped := time.Unix(1700000000, 123456789)
	now := map[string]timedInfo{}
	stat := func(p string) (os.FileInfo, error) {
		if st, ok := now[p]; ok {
			return st, nil
		}
		return nil, &fs.PathError{Op: "stat", Path: p, Err: fs.ErrNotExist}
	}
	e := &fdinfo.FileEntry{Type: fdinfo.FdTypes_REG.Enum(), Id: proto.Uint32(4), Reg: &regfile.RegFileEntry{
		Id: proto.Uint32(4), Name: proto.String("/f"), Size: proto.Uint64(10)}}
	c := FileCheck{Stat: stat, Mtimes: map[uint32]time.Time{4: dumped}}
	cases := []struct {
		name string
		st   *timedInfo
		skip bool
		want string // in the error; "" for none
	}{
		{"unchanged", &timedInfo{fakeInfo{size: 10}, dumped}, false, ""},
		{"touched", &timedInfo{fakeInfo{size: 10}, dumped.Add(time.Nanosecond)}, false, "modified"},
		{"copied keeping microseconds", &timedInfo{fakeInfo{size: 10}, time.Unix(1700000000, 123456000)}, false, ""},
		{"copied keeping whole seconds", &timedInfo{fakeInfo{size: 10}, time.Unix(1700000000, 0)}, false, ""},
		{"touched in the same second", &timedInfo{fakeInfo{size: 10}, time.Unix(1700000000, 5)}, false, "modified"},
		{"touched a microsecond before", &timedInfo{fakeInfo{size: 10}, time.Unix(1700000000, 123455000)}, false, "modified"},
		{"grown", &timedInfo{fakeInfo{size: 11}, dumped}, false, "size 11, was 10 (--skip-file-check restores anyway)"},
		{"gone", nil, false, "gone"},
		{"touched, skipped", &timedInfo{fakeInfo{size: 11}, dumped.Add(time.Hour)}, true, ""},
		{"gone, skipped", nil, true, "gone"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			delete(now, "/f")
			if tc.st != nil {
				now["/f"] = *tc.st
			}
			c.Skip = tc.skip
			err := c.Reg(e)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "/f")):
				t.Errorf("error %v, want one naming /f and %q", err, tc.want)
			}
		})
	}
	now["/f"] = timedInfo{fakeInfo{size: 10}, dumped.Add(time.Second)}
	c.Skip = false
	if err := c.Reg(e); err == nil || !strings.Contains(err.Error(), "--skip-file-check") {
		t.Errorf("a changed time: %v, want an error that names --skip-file-check", err)
	}
	c = FileCheck{Stat: stat}
	if err := c.Reg(e); err != nil {
		t.Errorf("without recorded times (criu's images) the size alone decides: %v", err)
	}
}

// TestSameMtime: a time kept with less precision by a copy (cut to
// microseconds or seconds, or rounded to seconds) is the same; any other
// is not.
func TestSameMtime(t *testing.T) {
	late := time.Unix(1700000000, 987654321) // rounds up
	for _, c := range []struct {
		got, want time.Time
		same      bool
	}{
		{late, late, true},
		{time.Unix(1700000000, 987654000), late, true},
		{time.Unix(1700000000, 0), late, true},
		{time.Unix(1700000001, 0), late, true},
		{time.Unix(1700000002, 0), late, false},
		{time.Unix(1700000000, 987654322), late, false},
		{time.Unix(1700000000, 500000000), late, false},
		{time.Unix(1699999999, 0), late, false},
	} {
		if got := sameMtime(c.got, c.want); got != c.same {
			t.Errorf("sameMtime(%v, %v) = %v, want %v", c.got, c.want, got, c.same)
		}
	}
}

// TestFileCheckGrownForWriting: a file the process had open for writing
// that only grew since the dump (its log) is restored with a warning, its
// new time notwithstanding; one open read-only that grew, or one open for
// writing that shrank, is still refused.
func TestFileCheckGrownForWriting(t *testing.T) {
	dumped := time.Unix(1700000000, 0)
	var st timedInfo
	var warned []string
	c := FileCheck{Stat: func(string) (os.FileInfo, error) { return st, nil }, Mtimes: map[uint32]time.Time{4: dumped},
		Warnf: func(format string, args ...any) { warned = append(warned, fmt.Sprintf(format, args...)) }}
	entry := func(flags uint32) *fdinfo.FileEntry {
		return &fdinfo.FileEntry{Type: fdinfo.FdTypes_REG.Enum(), Id: proto.Uint32(4), Reg: &regfile.RegFileEntry{
			Id: proto.Uint32(4), Name: proto.String("/log"), Size: proto.Uint64(10), Flags: proto.Uint32(flags)}}
	}
	for _, tc := range []struct {
		name   string
		flags  uint32
		size   int64
		refuse bool
	}{
		{"appended to, write-only", unix.O_WRONLY | unix.O_APPEND, 30, false},
		{"appended to, read-write", unix.O_RDWR, 11, false},
		{"appended to, read-only", unix.O_RDONLY, 30, true},
		{"shrunk, write-only", unix.O_WRONLY, 5, true},
	} {
		warned = nil
		st = timedInfo{fakeInfo{size: tc.size}, dumped.Add(time.Minute)}
		err := c.Reg(entry(tc.flags))
		switch {
		case tc.refuse && err == nil:
			t.Errorf("%s: restored", tc.name)
		case !tc.refuse && err != nil:
			t.Errorf("%s: refused: %v", tc.name, err)
		case !tc.refuse && (len(warned) != 1 || !strings.Contains(warned[0], "/log") || !strings.Contains(warned[0], "grew from 10")):
			t.Errorf("%s: warnings %q, want one naming /log and its growth", tc.name, warned)
		}
	}
}

func TestMtimesImage(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	tab := NewTable()
	id, err := tab.AddPath(0, p, unix.O_RDONLY)
	if err != nil {
		t.Fatal(err)
	}
	dirID, _ := tab.AddPath(0, dir, unix.O_RDONLY)
	img := tempImages(t)
	if err := writeMtimes(img, tab, nil); err != nil {
		t.Fatal(err)
	}
	got, err := readMtimes(img)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(p)
	if !got[id].Equal(st.ModTime()) {
		t.Errorf("mtime of id %d read back %v, want %v", id, got[id], st.ModTime())
	}
	if _, ok := got[dirID]; ok {
		t.Errorf("a directory's time is recorded: it changes as files come and go")
	}
	if m, err := readMtimes(tempImages(t)); m != nil || err != nil {
		t.Errorf("no amber-mtimes.txt: %v %v, want nothing", m, err)
	}
	for _, bad := range []string{"1 2", "x 1 2", "1 2 1000000000", "0 1 1"} {
		if _, _, err := parseMtime(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestStatAhead(t *testing.T) {
	idx := Index{}
	for i := range uint32(statAheadMin) {
		idx[i+1] = &fdinfo.FileEntry{Type: fdinfo.FdTypes_REG.Enum(), Id: proto.Uint32(i + 1),
			Reg: &regfile.RegFileEntry{Name: proto.String(fmt.Sprintf("/d/%d", i))}}
	}
	var mu sync.Mutex
	calls := map[string]int{}
	stat := func(p string) (os.FileInfo, error) {
		mu.Lock()
		defer mu.Unlock()
		calls[p]++
		if p == "/d/7" && calls[p] == 1 {
			return nil, fs.ErrNotExist // created after the look ahead
		}
		return fakeInfo{name: p, size: int64(len(p))}, nil
	}
	ahead := idx.StatAhead(stat)
	for _, p := range []string{"/d/0", "/d/0", "/d/99", "/d/7", "/elsewhere"} {
		st, err := ahead(p)
		if err != nil || st.Size() != int64(len(p)) {
			t.Errorf("stat %s: %v, %v", p, st, err)
		}
	}
	for p, want := range map[string]int{"/d/0": 1, "/d/99": 1, "/d/7": 2, "/elsewhere": 1} {
		if calls[p] != want {
			t.Errorf("%s stat-ed %d times, want %d", p, calls[p], want)
		}
	}
	small := Index{1: idx[1]}
	calls = map[string]int{}
	small.StatAhead(stat)
	if len(calls) != 0 {
		t.Errorf("a few files are stat-ed ahead: %v", calls)
	}
}
