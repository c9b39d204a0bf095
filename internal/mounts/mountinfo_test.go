package mounts

import (
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// runcLike is the mountinfo of test/zdtm/static/ns_mnt, a container
// pivoted into a root of its own, with a shared and an escaped line.
const runcLike = `74 47 254:0 /tmp/s/root / rw,relatime - ext4 /dev/vda rw,discard
77 74 0:42 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
78 74 0:21 / /sys ro,nosuid,nodev,noexec,relatime - sysfs sysfs rw
80 74 0:44 / /dev rw,nosuid - tmpfs tmpfs rw,size=65536k,mode=755
81 80 0:6 /null /dev/null rw,relatime - devtmpfs devtmpfs rw,size=12334056k,mode=755
82 80 0:48 / /dev/pts rw,nosuid,noexec,relatime - devpts devpts rw,mode=620,ptmxmode=666
83 80 0:41 / /dev/mqueue rw,nosuid,nodev,noexec,relatime shared:5 master:2 - mqueue mqueue rw
84 74 0:46 / /tmp rw,nosuid,nodev,relatime - tmpfs tmpfs rw,size=4096k
85 74 254:0 /usr /usr ro,relatime - ext4 /dev/vda rw,discard
86 74 254:0 /tmp/s/root/data /ro ro,nosuid,relatime - ext4 /dev/vda rw,discard
87 77 0:6 /null /proc/keys rw,relatime - devtmpfs devtmpfs rw,size=12334056k,mode=755
88 74 254:0 /tmp/s/a\040b.out /a\040b.out rw,relatime - ext4 /dev/vda rw,discard
`

func parse(t *testing.T, s string) []Info {
	t.Helper()
	infos, err := ParseMountinfo(strings.NewReader(s), "mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	return infos
}

// TestParseMountinfo reads every field, the optional ones and escapes.
func TestParseMountinfo(t *testing.T) {
	infos := parse(t, runcLike)
	if len(infos) != 12 {
		t.Fatalf("%d mounts, want 12", len(infos))
	}
	mq := infos[6]
	if mq.ID != 83 || mq.Parent != 80 || mq.Major != 0 || mq.Minor != 41 || mq.Shared != 5 || mq.Master != 2 ||
		mq.Mountpoint != "/dev/mqueue" || mq.FSType != "mqueue" || mq.Source != "mqueue" || mq.SuperOptions != "rw" {
		t.Errorf("mqueue line: %+v", mq)
	}
	if out := infos[11]; out.Root != "/tmp/s/a b.out" || out.Mountpoint != "/a b.out" {
		t.Errorf("escaped line: root %q mountpoint %q", out.Root, out.Mountpoint)
	}
}

// TestParseMountinfoBad names the line at fault.
func TestParseMountinfoBad(t *testing.T) {
	for _, bad := range []string{"1 2 3\n", "x 1 0:1 / / rw - tmpfs t rw\n", "1 1 0:1 / / rw shared:x - tmpfs t rw\n", "1 1 0:1 / / rw tmpfs t rw\n"} {
		_, err := ParseMountinfo(strings.NewReader(bad), "mi")
		if err == nil || !strings.Contains(err.Error(), "mi line 1") {
			t.Errorf("%q: got %v, want an error naming line 1", bad, err)
		}
	}
}

// TestEntryFlags: mount options become MS_ flags as CRIU writes them
// (strictatime when no atime option), superblock flags are split from
// the data a new mount gets, propagation goes into flags.
func TestEntryFlags(t *testing.T) {
	infos := parse(t, runcLike)
	es := Entries(infos, nil)
	if got, want := es[1].GetFlags(), uint32(unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC|unix.MS_RELATIME); got != want {
		t.Errorf("proc flags %#x, want %#x", got, want)
	}
	if got, want := es[3].GetFlags(), uint32(unix.MS_NOSUID|unix.MS_STRICTATIME); got != want {
		t.Errorf("/dev flags %#x, want %#x", got, want)
	}
	if got := es[3].GetOptions(); got != "size=65536k,mode=755" {
		t.Errorf("/dev options %q", got)
	}
	if got := es[6].GetFlags(); got&unix.MS_SHARED == 0 || got&unix.MS_SLAVE == 0 {
		t.Errorf("mqueue flags %#x lack shared and slave", got)
	}
	if es[0].GetFstype() != 0 || es[0].Fsname != nil || es[1].GetFstype() != 1 {
		t.Errorf("fstypes %d %q, %d", es[0].GetFstype(), es[0].GetFsname(), es[1].GetFstype())
	}
	if got := es[1].GetRootDev(); got != 42 {
		t.Errorf("root_dev %d, want 42 (0:42)", got)
	}
}

// TestEntriesUnusedKey: a key for a mountpoint the namespace does not
// have (runc's /dev/random, made with mknod, not mounted) is ignored, as
// CRIU ignores it; the keys that match still mark their mounts.
func TestEntriesUnusedKey(t *testing.T) {
	es := Entries(parse(t, runcLike), map[string]string{"/nothere": "k", "/dev/null": "null"})
	keyed := 0
	for _, e := range es {
		if e.ExtKey != nil {
			keyed++
			if e.GetMountpoint() != "/dev/null" || e.GetExtKey() != "null" {
				t.Errorf("mount %s keyed %q", e.GetMountpoint(), e.GetExtKey())
			}
		}
	}
	if keyed != 1 {
		t.Errorf("%d mounts keyed, want 1 (/dev/null)", keyed)
	}
}

// TestParseMountinfoEmptySource reads a mount with no source (two
// spaces) and a mountpoint with escaped spaces, tabs and backslashes, as
// zdtm's mount_paths makes.
func TestParseMountinfoEmptySource(t *testing.T) {
	line := `76 102 0:48 / /m/tmpfs\040\011\134test rw,relatime - tmpfs  rw` + "\n"
	infos := parse(t, line)
	if len(infos) != 1 {
		t.Fatalf("%d mounts, want 1", len(infos))
	}
	m := infos[0]
	if m.Mountpoint != "/m/tmpfs \t\\test" || m.Source != "" || m.FSType != "tmpfs" || m.SuperOptions != "rw" {
		t.Errorf("got mountpoint %q source %q type %q options %q", m.Mountpoint, m.Source, m.FSType, m.SuperOptions)
	}
}
