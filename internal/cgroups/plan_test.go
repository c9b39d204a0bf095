package cgroups

import (
	"slices"
	"strings"
	"testing"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/cgroup"
	"google.golang.org/protobuf/proto"
)

func TestParseSet(t *testing.T) {
	s, err := parseSet([]byte("4:memory:/a/b\n1:cpu,cpuacct:/x\n0::/\n9:name=systemd:/\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := Set{{"", "/"}, {"cpu,cpuacct", "/x"}, {"memory", "/a/b"}, {"name=systemd", "/"}}
	if !slices.Equal(s, want) {
		t.Errorf("parsed %v, want %v", s, want)
	}
	for _, bad := range []string{"4:memory\n", "4:memory:relative\n"} {
		if _, err := parseSet([]byte(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestParseModeAndRoot(t *testing.T) {
	for s, want := range map[string]Mode{"": Soft, "soft": Soft, "FULL": Full, "strict": Strict, "ignore": Ignore, "none": None, "props": Props} {
		if m, err := ParseMode(s); err != nil || m != want {
			t.Errorf("ParseMode(%q) = %v, %v; want %v", s, m, err, want)
		}
	}
	if _, err := ParseMode("hard"); err == nil || !strings.Contains(err.Error(), "hard") {
		t.Errorf("ParseMode(hard): %v", err)
	}
	if r, err := ParseRoot("cpu:/n"); err != nil || r != (Root{"cpu", "/n"}) {
		t.Errorf("ParseRoot(cpu:/n) = %v, %v", r, err)
	}
	if r, err := ParseRoot("/n"); err != nil || r != (Root{"", "/n"}) {
		t.Errorf("ParseRoot(/n) = %v, %v", r, err)
	}
	if _, err := ParseRoot("cpu:n"); err == nil {
		t.Error("ParseRoot(cpu:n) accepted a relative path")
	}
}

// entry is a cgroup.img entry: set 2 in cpu,cpuacct:/c and memory:/c/m,
// set 3 in cpu,cpuacct:/c/sub; cpu's dirs c and c/sub, memory's c/m.
func entry() *cgroup.CgroupEntry {
	prop := func(n, v string) *cgroup.CgroupPropEntry {
		return &cgroup.CgroupPropEntry{Name: proto.String(n), Value: proto.String(v)}
	}
	member := func(n, p string) *cgroup.CgMemberEntry {
		return &cgroup.CgMemberEntry{Name: proto.String(n), Path: proto.String(p)}
	}
	return &cgroup.CgroupEntry{
		Sets: []*cgroup.CgSetEntry{
			{Id: proto.Uint32(2), Ctls: []*cgroup.CgMemberEntry{member("cpu,cpuacct", "/c"), member("memory", "/c/m")}},
			{Id: proto.Uint32(3), Ctls: []*cgroup.CgMemberEntry{member("cpuacct,cpu", "/c/sub"), member("memory", "/c/m")}},
		},
		Controllers: []*cgroup.CgControllerEntry{
			{Cnames: []string{"cpu", "cpuacct"}, Dirs: []*cgroup.CgroupDirEntry{{
				DirName:    proto.String("c"),
				Properties: []*cgroup.CgroupPropEntry{prop("cpu.shares", "512")},
				Children:   []*cgroup.CgroupDirEntry{{DirName: proto.String("sub")}},
			}}},
			{Cnames: []string{"memory"}, Dirs: []*cgroup.CgroupDirEntry{{DirName: proto.String("c/m")}}},
		},
	}
}

func TestPlan(t *testing.T) {
	p, err := NewPlan(entry(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, d := range p.Dirs {
		dirs = append(dirs, d.Hier+":"+d.Path)
	}
	want := []string{"cpu,cpuacct:/c", "cpu,cpuacct:/c/sub", "memory:/c/m"}
	if !slices.Equal(dirs, want) {
		t.Errorf("dirs %v, want %v (parents first)", dirs, want)
	}
	if got := p.Dirs[0].Props; len(got) != 1 || got[0].GetValue() != "512" {
		t.Errorf("props of /c: %v", got)
	}
	// A member names its hierarchy's controllers in any order.
	if got := p.Sets[3]; !slices.Equal(got, []Member{{"cpu,cpuacct", "/c/sub"}, {"memory", "/c/m"}}) {
		t.Errorf("set 3: %v", got)
	}
}

func TestPlanRoots(t *testing.T) {
	p, err := NewPlan(entry(), []Root{{"", "/new"}, {"memory", "/mem"}})
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, d := range p.Dirs {
		dirs = append(dirs, d.Hier+":"+d.Path)
	}
	want := []string{"cpu,cpuacct:/new", "cpu,cpuacct:/new/sub", "memory:/mem"}
	if !slices.Equal(dirs, want) {
		t.Errorf("dirs %v, want %v", dirs, want)
	}
	if got := p.Sets[2]; !slices.Equal(got, []Member{{"cpu,cpuacct", "/new"}, {"memory", "/mem"}}) {
		t.Errorf("set 2: %v", got)
	}
	if got := p.Sets[3]; !slices.Equal(got, []Member{{"cpu,cpuacct", "/new/sub"}, {"memory", "/mem"}}) {
		t.Errorf("set 3: %v", got)
	}
	if _, err := NewPlan(entry(), []Root{{"cpu", "/a"}, {"cpuacct", "/b"}}); err == nil {
		t.Error("two roots for one hierarchy accepted")
	}
}

func TestPlanUnknownHierarchy(t *testing.T) {
	e := entry()
	e.Sets[0].Ctls[0].Name = proto.String("blkio")
	if _, err := NewPlan(e, nil); err == nil || !strings.Contains(err.Error(), "blkio") {
		t.Errorf("a set in a hierarchy without controller entry: %v", err)
	}
}

func TestDecide(t *testing.T) {
	d := Dir{Hier: "cpu", Path: "/c"}
	cases := []struct {
		mode   Mode
		exists bool
		want   Action
		err    bool
	}{
		{Soft, false, Make, false}, {Soft, true, Use, false},
		{Full, false, Make, false}, {Full, true, Update, false},
		{Strict, false, Make, false}, {Strict, true, 0, true},
		{None, false, 0, true}, {None, true, Use, false},
		{Props, false, 0, true}, {Props, true, Update, false},
	}
	for _, c := range cases {
		a, err := Decide(c.mode, c.exists, d)
		if (err != nil) != c.err || (err == nil && a != c.want) {
			t.Errorf("Decide(%v, exists %v) = %v, %v; want %v (error %v)", c.mode, c.exists, a, err, c.want, c.err)
		}
	}
}

func TestUnder(t *testing.T) {
	for _, c := range []struct {
		p, dir, rest string
		ok           bool
	}{
		{"/a/b", "/a", "/b", true}, {"/a", "/a", "/", true}, {"/ab", "/a", "", false}, {"/x", "/", "/x", true},
	} {
		rest, ok := under(c.p, c.dir)
		if ok != c.ok || (ok && rest != c.rest) {
			t.Errorf("under(%q, %q) = %q, %v", c.p, c.dir, rest, ok)
		}
	}
}

// TestNamespaceRoot: the root of a cgroup namespace is what a task's
// path seen from outside has before its path seen inside.
func TestNamespaceRoot(t *testing.T) {
	full := Set{{"", "/k8s/pod/c"}, {"cpu", "/c/inner"}, {"memory", "/m"}}
	rel := Set{{"", "/"}, {"cpu", "/inner"}, {"memory", "/m"}}
	got, err := namespaceRoot(full, rel)
	if err != nil {
		t.Fatal(err)
	}
	if want := (Set{{"", "/k8s/pod/c"}, {"cpu", "/c"}, {"memory", "/"}}); !slices.Equal(got, want) {
		t.Errorf("roots %v, want %v", got, want)
	}
	for _, bad := range []Set{
		{{"", "/"}, {"cpu", "/other"}, {"memory", "/m"}},    // not a suffix
		{{"", "/"}, {"cpu", "/../inner"}, {"memory", "/m"}}, // outside the root
		{{"", "/"}, {"memory", "/m"}},                       // a hierarchy missing
		{{"", "/"}, {"cpu", "ner"}, {"memory", "/m"}},       // not a path
	} {
		if _, err := namespaceRoot(full, bad); err == nil {
			t.Errorf("namespaceRoot(%v, %v) accepted", full, bad)
		}
	}
}

// TestPlanNamespaceRoot: cgns_prefix gives the namespace's root, which
// --cgroup-root moves with the sets; a prefix that does not end a
// directory, or two roots in one hierarchy, are errors.
func TestPlanNamespaceRoot(t *testing.T) {
	e := entry()
	e.Sets[0].Ctls[0].CgnsPrefix = proto.Uint32(2) // cpu,cpuacct:/c
	e.Sets[1].Ctls[0].CgnsPrefix = proto.Uint32(2) // cpu,cpuacct:/c of /c/sub
	p, err := NewPlan(e, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := (Set{{"cpu,cpuacct", "/c"}}); !slices.Equal(p.NsRoot, want) {
		t.Errorf("namespace root %v, want %v", p.NsRoot, want)
	}
	p, err = NewPlan(e, []Root{{"cpu", "/new"}})
	if err != nil {
		t.Fatal(err)
	}
	if want := (Set{{"cpu,cpuacct", "/new"}}); !slices.Equal(p.NsRoot, want) {
		t.Errorf("namespace root under --cgroup-root %v, want %v", p.NsRoot, want)
	}
	e.Sets[1].Ctls[0].CgnsPrefix = proto.Uint32(6) // /c/sub
	if _, err := NewPlan(e, nil); err == nil || !strings.Contains(err.Error(), "one cgroup namespace") {
		t.Errorf("two namespace roots: %v", err)
	}
	e = entry()
	e.Sets[1].Ctls[0].CgnsPrefix = proto.Uint32(4) // "/c/s" of /c/sub
	if _, err := NewPlan(e, nil); err == nil || !strings.Contains(err.Error(), "cgns_prefix 4") {
		t.Errorf("a prefix inside a name: %v", err)
	}
}
