package mounts

import (
	"slices"
	"testing"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/mnt"
)

// TestMatchCopy: a namespace copied from its parent's keeps the mounts
// both had, unmounts what the task unmounted, and makes anew the tmpfs
// it mounted over a copied one.
func TestMatchCopy(t *testing.T) {
	parent := Entries(parse(t, `1 0 8:1 / / rw - ext4 /dev/sda rw
2 1 0:5 / /proc rw - proc proc rw
3 1 0:40 / /ext rw - tmpfs x rw
4 1 0:41 / /gone rw - tmpfs y rw
`), nil)
	child := Entries(parse(t, `11 10 8:1 / / rw - ext4 /dev/sda rw
12 11 0:5 / /proc rw - proc proc rw
13 11 0:42 / /ext rw - tmpfs own rw
`), nil)
	steps, err := Plan(child, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The copy at restore: new ids and devices.
	current := parse(t, `21 20 8:1 / / rw - ext4 /dev/sda rw
22 21 0:7 / /proc rw - proc proc rw
23 21 0:50 / /ext rw - tmpfs x rw
24 21 0:51 / /gone rw - tmpfs y rw
`)
	keep, drop, err := matchCopy(steps, current, parent)
	if err != nil {
		t.Fatal(err)
	}
	if len(keep) != 2 || keep[11] != 21 || keep[12] != 22 {
		t.Errorf("keep %v, want 11->21, 12->22", keep)
	}
	if len(drop) != 2 || drop[0] != "/gone" || drop[1] != "/ext" {
		t.Errorf("drop %v, want /gone, /ext", drop)
	}
}

// TestMatchCopyPivoted: a copy whose root is not the dumped one (the
// task pivoted) is refused, naming the root mount.
func TestMatchCopyPivoted(t *testing.T) {
	child := []*mnt.MntEntry{entryOf(parse(t, "11 10 0:60 / / rw - tmpfs t rw\n")[0], "")}
	steps, err := Plan(child, nil)
	if err != nil {
		t.Fatal(err)
	}
	current := parse(t, "21 20 8:1 / / rw - ext4 /dev/sda rw\n")
	if _, _, err := matchCopy(steps, current, nil); err == nil {
		t.Fatal("a pivoted root was matched")
	}
}

// TestWithoutLastAt: the last mount at the mountpoint goes with every
// mount under it, whatever order mountinfo lists them in; an earlier
// mount at the same place and the rest stay.
func TestWithoutLastAt(t *testing.T) {
	infos := []Info{
		{ID: 1, Parent: 0, Mountpoint: "/"},
		{ID: 2, Parent: 1, Mountpoint: "/proc"},          // the tree's
		{ID: 3, Parent: 2, Mountpoint: "/proc/sys/fs/x"}, // under it
		{ID: 9, Parent: 8, Mountpoint: "/proc/sys/fs/y"}, // under amber's, listed first
		{ID: 8, Parent: 2, Mountpoint: "/proc"},          // amber's, over it
		{ID: 10, Parent: 9, Mountpoint: "/proc/sys/fs/y/z"},
		{ID: 4, Parent: 1, Mountpoint: "/tmp"},
	}
	var ids []uint32
	for _, in := range withoutLastAt(infos, "/proc") {
		ids = append(ids, in.ID)
	}
	if want := []uint32{1, 2, 3, 4}; !slices.Equal(ids, want) {
		t.Errorf("left %v, want %v", ids, want)
	}
	if got := withoutLastAt(infos, "/none"); len(got) != len(infos) {
		t.Errorf("no mount at /none: %d left of %d", len(got), len(infos))
	}
}
