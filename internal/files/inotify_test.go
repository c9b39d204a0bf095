package files

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/fh"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/fsnotify"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/proc"
)

// inotifyWatch is one watch of a test layout.
type inotifyWatch struct {
	wd   uint32
	path string
	mask uint32
}

// inotify adds an inotify instance with watches, whose paths exist.
func (l *layout) inotify(flags uint32, watches ...inotifyWatch) uint32 {
	return l.entry(fdinfo.FdTypes_INOTIFY, func(e *fdinfo.FileEntry, id uint32) {
		ify := &fsnotify.InotifyFileEntry{Id: proto.Uint32(id), Flags: proto.Uint32(flags), Fown: newFown()}
		for _, w := range watches {
			ify.Wd = append(ify.Wd, &fsnotify.InotifyWdEntry{Id: proto.Uint32(id), Wd: proto.Uint32(w.wd),
				Mask: proto.Uint32(w.mask), IgnoredMask: proto.Uint32(0), IIno: proto.Uint64(1), SDev: proto.Uint32(1),
				FHandle: &fh.FhEntry{Bytes: proto.Uint32(0), Type: proto.Uint32(0), Path: proto.String(w.path)}})
			l.sizes[w.path] = 0
		}
		e.Ify = ify
	})
}

func TestParseInotifyWatches(t *testing.T) {
	lines := []string{
		"inotify wd:4 ino:9842d0 sdev:fe00000 mask:2 ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:d0429800025835b8",
		"inotify wd:1 ino:3c4a3 sdev:fe00000 mask:100 ignored_mask:0 fhandle-bytes:c fhandle-type:1 f_handle:96c3e1c10100000000000002",
	}
	got, err := parseInotifyWatches(lines)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].GetWd() != 1 || got[1].GetWd() != 4 {
		t.Fatalf("parsed %v, want wds 1 and 4 in order", got)
	}
	w := got[1]
	if w.GetIIno() != 0x9842d0 || w.GetSDev() != 0xfe00000 || w.GetMask() != unix.IN_MODIFY ||
		w.GetFHandle().GetBytes() != 8 || w.GetFHandle().GetType() != 1 || len(w.GetFHandle().GetHandle()) != fhMinWords {
		t.Errorf("wd 4: %v", w)
	}
	h, err := handleBytes(got[0].GetFHandle())
	if want := []byte{0x96, 0xc3, 0xe1, 0xc1, 1, 0, 0, 0, 0, 0, 0, 2}; err != nil || !bytes.Equal(h, want) {
		t.Errorf("handle of wd 1: %x %v, want %x", h, err, want)
	}
	for _, bad := range []string{
		"inotify wd:1 ino:1 sdev:1 mask:2 ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:d042",
		"inotify wd:1 ino:1 sdev:1 mask:2 ignored_mask:0 fhandle-bytes:1 fhandle-type:1 f_handle:zz",
		"inotify wd:1 ino:1 sdev:1 mask:2 fhandle-bytes:1 fhandle-type:1 f_handle:00",
		"inotify wd:1 ino:1 sdev:1 mask:2 ignored_mask:0",
	} {
		if _, err := parseInotifyWatches([]string{bad}); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

// TestAddInotifyLive dumps a real inotify instance: the watches' handles
// resolve to their paths. Then an instance with an event queued fails.
func TestAddInotifyLive(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("open_by_handle_at needs CAP_DAC_READ_SEARCH")
	}
	dir := t.TempDir()
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	for _, p := range []string{dir, sub} {
		if _, err := unix.InotifyAddWatch(fd, p, unix.IN_CREATE|unix.IN_ONESHOT); err != nil {
			t.Fatal(err)
		}
	}
	var warned string
	add := func() (*fsnotify.InotifyFileEntry, error) {
		info, err := proc.ReadFdinfo(os.Getpid(), fd)
		if err != nil {
			t.Fatal(err)
		}
		tab := NewTable()
		id, _, err := tab.addInotify(os.Getpid(), fd, info, info.Flags&^unix.O_CLOEXEC, func(f string, a ...any) { warned = fmt.Sprintf(f, a...) })
		if err != nil {
			return nil, err
		}
		return tab.Entries()[id-1].GetIfy(), nil
	}
	e, err := add()
	if err != nil {
		t.Fatal(err)
	}
	if len(e.GetWd()) != 2 {
		t.Fatalf("entry %v, want 2 watches", e)
	}
	for i, want := range []string{dir, sub} {
		w := e.GetWd()[i]
		if w.GetWd() != uint32(i+1) || w.GetFHandle().GetPath() != want || w.GetMask() != unix.IN_CREATE|unix.IN_ONESHOT {
			t.Errorf("watch %d: wd %d path %q mask %#x, want wd %d path %q IN_CREATE|IN_ONESHOT",
				i, w.GetWd(), w.GetFHandle().GetPath(), w.GetMask(), i+1, want)
		}
	}
	if err := os.WriteFile(filepath.Join(sub, "f"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := add(); err != nil || !strings.Contains(warned, "not read yet") {
		t.Errorf("queued events: error %v, warning %q; want a warning and no error", err, warned)
	}
}

func TestPlanInotify(t *testing.T) {
	l := newLayout()
	// wds 2, 5 and 6 were freed; "/" is watched, so no placeholder on it.
	ify := l.inotify(unix.O_RDONLY|unix.O_NONBLOCK,
		inotifyWatch{7, "/srv/x", unix.IN_DELETE}, inotifyWatch{1, "/", unix.IN_CREATE},
		inotifyWatch{3, "/srv", unix.IN_CREATE | unix.IN_ONESHOT}, inotifyWatch{4, "/srv/y", unix.IN_MODIFY})
	empty := l.inotify(unix.O_RDONLY)
	l.fd(3, ify, false).fd(1, empty, true)
	s, _ := runFds(t, l, 1, 3)
	checkTable(t, s, l.in, l.known)
	ev := simEventAt(t, s, 3, "inotify")
	want := map[int]simInotifyWatch{1: {"/", unix.IN_CREATE}, 3: {"/srv", unix.IN_CREATE | unix.IN_ONESHOT},
		4: {"/srv/y", unix.IN_MODIFY}, 7: {"/srv/x", unix.IN_DELETE}}
	if len(ev.wds) != len(want) || ev.nextWd != 8 || len(ev.queue) != 0 {
		t.Errorf("fd 3: %v next wd %d queue %v, want wds 1 3 4 7, next 8, nothing queued", ev, ev.nextWd, ev.queue)
	}
	for wd, w := range want {
		if ev.wds[wd] != w {
			t.Errorf("wd %d: %v, want %v", wd, ev.wds[wd], w)
		}
	}
	if s.fds[3].f.flags != unix.O_NONBLOCK {
		t.Errorf("fd 3 flags %#x, want O_NONBLOCK", s.fds[3].f.flags)
	}
	if ev := simEventAt(t, s, 1, "inotify"); len(ev.wds) != 0 || ev.nextWd != 1 {
		t.Errorf("fd 1: %v, want no watches", ev)
	}
}

func TestPlanInotifyErrors(t *testing.T) {
	for name, watches := range map[string][]inotifyWatch{
		"repeated":            {{2, "/a", unix.IN_CREATE}, {2, "/b", unix.IN_CREATE}},
		"zero":                {{0, "/a", unix.IN_CREATE}},
		"no path":             {{1, "", unix.IN_CREATE}},
		"freed watch numbers": {{maxWdGap + 2, "/a", unix.IN_CREATE}},
	} {
		l := newLayout()
		l.fd(4, l.inotify(unix.O_RDONLY, watches...), false)
		if _, err := planFds(l); err == nil || !strings.Contains(err.Error(), "fd 4") || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: error %v", name, err)
		}
	}
	l := newLayout()
	l.fd(4, l.inotify(unix.O_RDONLY, inotifyWatch{1, "/gone", unix.IN_CREATE}), false)
	delete(l.sizes, "/gone")
	if _, err := planFds(l); err == nil || !strings.Contains(err.Error(), "/gone is gone") {
		t.Errorf("watched path gone: error %v", err)
	}
}

func TestHandleWords(t *testing.T) {
	h := []byte{1, 2, 3, 4, 5, 6, 7, 8, 9}
	words := handleWords(h)
	if len(words) != fhMinWords || words[0] != 0x0807060504030201 || words[1] != 9 {
		t.Fatalf("words %x", words)
	}
	got, err := handleBytes(&fh.FhEntry{Bytes: proto.Uint32(9), Handle: words})
	if err != nil || !bytes.Equal(got, h) {
		t.Errorf("round trip %x %v", got, err)
	}
	if _, err := handleBytes(&fh.FhEntry{Bytes: proto.Uint32(200), Handle: words}); err == nil {
		t.Errorf("a 200-byte handle in 128 bytes unpacked")
	}
}
