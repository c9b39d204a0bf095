package mounts

import (
	"fmt"
	"strings"
	"testing"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/mnt"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
)

// runcEntries are runcLike's entries with its host binds external.
func runcEntries(t *testing.T) []*mnt.MntEntry {
	t.Helper()
	return Entries(parse(t, runcLike), map[string]string{"/usr": "usr", "/dev/null": "null", "/a b.out": "out"})
}

// describe is a step in a line, for comparing plans.
func describe(s Step) string {
	return fmt.Sprintf("%s %s <- %s", s.How, s.Target, s.Source)
}

// TestPlanContainer plans ns_mnt's mounts: the root first, each mount
// after its parent and its source, the kernel's filesystems afresh, the
// masked /proc/keys bound from the container's /dev/null, the read-only
// /ro from the root's data directory.
func TestPlanContainer(t *testing.T) {
	steps, err := Plan(runcEntries(t), map[string]string{"usr": "/usr", "null": "/dev/null", "out": "/host/out"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range steps {
		got = append(got, describe(s))
	}
	want := []string{
		"root / <- ", "new /proc <- proc", "new /sys <- sysfs", "new /dev <- tmpfs",
		"external /dev/null <- /dev/null", "new /dev/pts <- devpts", "new /dev/mqueue <- mqueue",
		"new /tmp <- tmpfs", "external /usr <- /usr", "bind /ro <- /data",
		"bind /proc/keys <- /dev/null", "external /a b.out <- /host/out",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("plan:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, s := range steps {
		if s.Flags&propagation != 0 {
			t.Errorf("%s: flags %#x keep propagation", describe(s), s.Flags)
		}
		if s.Tmpfs != (s.FSType == "tmpfs") {
			t.Errorf("%s: tmpfs %v", describe(s), s.Tmpfs)
		}
	}
	if s := steps[9]; s.Flags&unix.MS_RDONLY == 0 || s.Flags&unix.MS_NOSUID == 0 {
		t.Errorf("/ro flags %#x, want ro and nosuid", s.Flags)
	}
}

// TestPlanBindOrder: a bind comes after the mount it is bound from, even
// when the images list it first, and from the closest one.
func TestPlanBindOrder(t *testing.T) {
	es := parse(t, `1 0 8:1 /r / rw - ext4 /dev/sda rw
3 1 0:50 /sub /b rw - tmpfs tmpfs rw
2 1 0:50 / /a rw - tmpfs tmpfs rw
4 1 0:50 /sub/x /c rw - tmpfs tmpfs rw
`)
	steps, err := Plan(Entries(es, nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range steps {
		got = append(got, describe(s))
	}
	want := "root / <- |new /a <- tmpfs|bind /b <- /a/sub|bind /c <- /b/x"
	if strings.Join(got, "|") != want {
		t.Fatalf("plan %q, want %q", strings.Join(got, "|"), want)
	}
}

// TestPlanOvermounts: a mount hidden by a sibling (one of the same
// parent at a place above, zdtm's tempfs_overmounted) is made before
// it; a bind whose best source waits for such a sibling is bound from
// another made already (overmount_with_shared_parent, a loop before).
func TestPlanOvermounts(t *testing.T) {
	for _, tc := range []struct{ name, mountinfo, want string }{
		{"stacked", `1 0 8:1 /r / rw - ext4 /dev/sda rw
2 1 0:51 / /a rw - tmpfs t rw
3 2 0:52 / /a rw - tmpfs t rw
4 1 0:53 / /a/b rw - tmpfs t rw
`, "root / <- |new /a/b <- t|new /a <- t|new /a <- t"},
		{"shared parent", `69 46 0:39 / / rw - tmpfs x rw
70 69 0:39 /t /t rw shared:2 - tmpfs x rw
71 70 0:39 /t/a/b /t/a rw shared:2 - tmpfs x rw
72 71 0:39 /t/d /t/a/c rw shared:2 - tmpfs x rw
73 70 0:39 /t/d /t/a/b/c rw shared:2 - tmpfs x rw
`, "root / <- |bind /t <- /t|bind /t/a/b/c <- /t/d|bind /t/a <- /t/a/b|bind /t/a/c <- /t/d"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			steps, err := Plan(Entries(parse(t, tc.mountinfo), nil), nil)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, s := range steps {
				got = append(got, describe(s))
			}
			if strings.Join(got, "|") != tc.want {
				t.Fatalf("plan %q, want %q", strings.Join(got, "|"), tc.want)
			}
		})
	}
}

// TestPlanBindFromRoot: a bind of part of the root's filesystem comes
// from the root, even when the root's mount id is larger (zdtm's
// namespaces, whose root is a copy made after the test's binds' ids).
func TestPlanBindFromRoot(t *testing.T) {
	entries := Entries(parse(t, "90 70 8:1 /work / rw - ext4 /dev/sda rw\n83 90 8:1 /work/t/test /t/bind rw - ext4 /dev/sda rw\n"), nil)
	steps, err := Plan(entries, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := describe(steps[1]); got != "bind /t/bind <- /t/test" {
		t.Fatalf("step %q, want a bind from the root's /t/test", got)
	}
}

// TestPlanErrors names the mount a restore cannot make.
func TestPlanErrors(t *testing.T) {
	for _, tc := range []struct {
		name, mountinfo string
		ext             map[string]string
		want            string
	}{
		{"host bind", "1 0 8:1 /r / rw - ext4 /dev/sda rw\n2 1 8:1 /usr /usr rw - ext4 /dev/sda rw\n", nil, "--external mnt[/usr]:KEY"},
		{"no root", "1 2 8:1 /r / rw - ext4 /dev/sda rw\n2 1 0:5 / /a rw - tmpfs t rw\n", nil, "no root mount"},
		{"two roots", "1 0 8:1 /r / rw - ext4 /dev/sda rw\n2 9 0:5 / /a rw - tmpfs t rw\n", nil, "both have no parent"},
		{"root elsewhere", "1 0 8:1 /r /x rw - ext4 /dev/sda rw\n", nil, "not /"},
		{"disk", "1 0 8:1 /r / rw - ext4 /dev/sda rw\n2 1 8:2 / /d rw - ext4 /dev/sdb rw\n", nil, "mount 2 at /d"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Plan(Entries(parse(t, tc.mountinfo), nil), tc.ext)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error naming %q", err, tc.want)
			}
		})
	}
	entries := runcEntries(t)
	_, err := Plan(entries, map[string]string{"usr": "/usr"})
	if err == nil || !strings.Contains(err.Error(), `key "null"`) || !strings.Contains(err.Error(), "--external mnt[null]:PATH") {
		t.Fatalf("a missing external source: got %v", err)
	}
}

// TestPlanConsole: runc's /dev/console, a bind of pty slave 0 of the
// container's devpts, is a bind from /dev/pts/0 that needs pty 0 made
// first; a bind of devpts's ptmx or of its root is not.
func TestPlanConsole(t *testing.T) {
	es := parse(t, `1 0 8:1 /r / rw - ext4 /dev/sda rw
2 1 0:44 / /dev rw,nosuid - tmpfs tmpfs rw,mode=755
3 2 0:48 / /dev/pts rw,nosuid,noexec,relatime - devpts devpts rw,mode=620,ptmxmode=666
4 2 0:48 /0 /dev/console rw,nosuid,noexec,relatime - devpts devpts rw,mode=620,ptmxmode=666
5 2 0:48 /ptmx /dev/ptmx rw,nosuid,noexec,relatime - devpts devpts rw,mode=620,ptmxmode=666
`)
	steps, err := Plan(Entries(es, nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range steps {
		d := describe(s)
		if s.PtySlave {
			d += fmt.Sprintf(" (pty %d)", s.PtyIndex)
		}
		got = append(got, d)
	}
	want := "root / <- |new /dev <- tmpfs|new /dev/pts <- devpts|bind /dev/console <- /dev/pts/0 (pty 0)|bind /dev/ptmx <- /dev/pts/ptmx"
	if strings.Join(got, "|") != want {
		t.Fatalf("plan %q, want %q", strings.Join(got, "|"), want)
	}
}

// TestKeepCopiedExternal: in a task's own namespace, an external
// mountpoint stays external only where it holds the root namespace's
// mount there; a tmpfs of the task's own in its place is not.
func TestKeepCopiedExternal(t *testing.T) {
	ext := func(id uint32, dev uint32, root, key string) *mnt.MntEntry {
		e := &mnt.MntEntry{MntId: proto.Uint32(id), RootDev: proto.Uint32(dev), Root: proto.String(root), Mountpoint: proto.String("/dst")}
		if key != "" {
			e.ExtKey = proto.String(key)
		}
		return e
	}
	like := []*mnt.MntEntry{ext(1, 7, "/", "ZDTM")}
	copied, own := ext(2, 7, "/", "ZDTM"), ext(3, 9, "/", "ZDTM")
	keepCopiedExternal([]*mnt.MntEntry{copied, own}, like)
	if copied.GetExtKey() != "ZDTM" || own.GetExtKey() != "" {
		t.Errorf("copied key %q, own key %q: want ZDTM and none", copied.GetExtKey(), own.GetExtKey())
	}
}
