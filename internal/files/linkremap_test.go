package files

import (
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"amber/internal/plan"
)

// linked maps file id to the link file lid, as remap-fpath.img LINKED
// does, and removes the file's own path.
func (l *layout) linked(id, lid uint32) {
	if l.in.Extra == nil {
		l.in.Extra = &Extra{}
	}
	if l.in.Extra.Links == nil {
		l.in.Extra.Links = map[uint32]uint32{}
	}
	l.in.Extra.Links[id] = lid
	delete(l.sizes, l.in.Files[id].GetReg().GetName())
}

// linkCalls are the linkat, openat and unlinkat calls of p's descriptor
// plan, with their paths.
func linkCalls(t *testing.T, p *planned) []string {
	var got []string
	for _, c := range p.prog.Calls[:p.fdsEnd] {
		switch c.Nr {
		case unix.SYS_LINKAT:
			got = append(got, fmt.Sprintf("linkat %s %s", cString(t, p.prog, c.Args[1]), cString(t, p.prog, c.Args[3])))
		case unix.SYS_OPENAT, unix.SYS_UNLINKAT, unix.SYS_MKDIRAT:
			got = append(got, fmt.Sprintf("%s %s %#o", plan.SyscallName(c.Nr), cString(t, p.prog, c.Args[1]), c.Args[2]))
		}
	}
	return got
}

// TestPlanLinkRemap plans two open files of a file linked back through
// /w/link_remap.9 to /w/f, and one whose directory is gone too: each is
// linked back to its path (its directory made first), opened there at
// its position, and the path removed again; the links themselves stay
// for amber to remove once the tree runs.
func TestPlanLinkRemap(t *testing.T) {
	l := newLayout()
	a := l.reg("/w/f", unix.O_RDWR, 30)
	b := l.reg("/w/f", unix.O_RDONLY, 5)
	g := l.reg("/w/gone/g", unix.O_WRONLY|unix.O_APPEND, 0)
	lf := l.reg("/w/link_remap.4", unix.O_RDONLY, 0)
	lg := l.reg("/w/link_remap.5", unix.O_RDONLY, 0)
	l.linked(a, lf)
	l.linked(b, lf)
	l.linked(g, lg)
	l.fd(3, a, false).fd(4, b, false).fd(5, g, false)
	l.withModes(map[string]fs.FileMode{"/w": fs.ModeDir})
	p, err := planFds(l)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"linkat /w/link_remap.4 /w/f",
		fmt.Sprintf("openat /w/f %#o", unix.O_RDWR), fmt.Sprintf("openat /w/f %#o", unix.O_RDONLY),
		"unlinkat /w/f 0",
		"mkdirat /w/gone 0700", "linkat /w/link_remap.5 /w/gone/g",
		fmt.Sprintf("openat /w/gone/g %#o", unix.O_WRONLY|unix.O_APPEND),
		"unlinkat /w/gone/g 0", "unlinkat /w/gone 01000",
	}
	if got := linkCalls(t, p); !slices.Equal(got, want) {
		t.Errorf("calls:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if got := LinkRemaps(l.in.Files, l.in.Extra); !slices.Equal(got, []string{"/w/link_remap.4", "/w/link_remap.5"}) {
		t.Errorf("LinkRemaps: %v", got)
	}
}

// TestPlanLinkRemapErrors: a link that is gone since the dump, or that
// names no regular file, refuses the plan naming the file; a path taken
// again links the file next to it.
func TestPlanLinkRemapErrors(t *testing.T) {
	l := newLayout()
	a := l.reg("/w/f", unix.O_RDWR, 0)
	lf := l.reg("/w/link_remap.2", unix.O_RDONLY, 0)
	l.linked(a, lf)
	delete(l.sizes, "/w/link_remap.2")
	l.fd(3, a, false)
	if _, err := planFds(l); err == nil || !strings.Contains(err.Error(), "link_remap.2") || !strings.Contains(err.Error(), "/w/f") {
		t.Errorf("link gone: %v", err)
	}
	l.sizes["/w/link_remap.2"] = 1000
	l.sizes["/w/f"] = 10 // another file took the name
	l.withModes(map[string]fs.FileMode{"/w": fs.ModeDir})
	p, err := planFds(l)
	if err != nil {
		t.Fatal(err)
	}
	if got := linkCalls(t, p); len(got) == 0 || got[0] != "linkat /w/link_remap.2 /w/f.amber.2.link" {
		t.Errorf("calls: %v; want the file linked next to its taken path", got)
	}
	l2 := newLayout()
	b := l2.reg("/w/g", unix.O_RDWR, 0)
	l2.linked(b, 7)
	l2.fd(3, b, false)
	if _, err := planFds(l2); err == nil || !strings.Contains(err.Error(), "file id 7") {
		t.Errorf("link to no file: %v", err)
	}
}
