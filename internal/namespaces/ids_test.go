package namespaces

import (
	"strings"
	"testing"

	criucore "github.com/checkpoint-restore/go-criu/v8/crit/images/criu-core"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
)

// ids returns ids 1 to 8 in the order of Kinds, with the changes given.
func ids(change map[Kind]uint32) *criucore.TaskKobjIdsEntry {
	e := &criucore.TaskKobjIdsEntry{}
	for i, k := range Kinds {
		id := uint32(i + 1)
		if v, ok := change[k]; ok {
			id = v
		}
		*field(e, k) = proto.Uint32(id)
	}
	return e
}

func TestCloneFlags(t *testing.T) {
	self := ids(nil)
	for _, tc := range []struct {
		name    string
		root    *criucore.TaskKobjIdsEntry
		want    uintptr
		wantErr string
	}{
		{"all amber's", ids(nil), 0, ""},
		{"uts", ids(map[Kind]uint32{UTS: 9}), unix.CLONE_NEWUTS, ""},
		{"uts ipc pid", ids(map[Kind]uint32{UTS: 9, IPC: 10, PID: 11}), unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWPID, ""},
		{"net", ids(map[Kind]uint32{Net: 9}), unix.CLONE_NEWNET, ""},
		{"time", ids(map[Kind]uint32{Time: 9}), unix.CLONE_NEWTIME, ""},
		{"cgroup", ids(map[Kind]uint32{Cgroup: 9}), unix.CLONE_NEWCGROUP, ""},
		{"mnt", ids(map[Kind]uint32{UTS: 9, Mnt: 10}), unix.CLONE_NEWUTS | unix.CLONE_NEWNS, ""},
		{"user", ids(map[Kind]uint32{UTS: 9, User: 10}), unix.CLONE_NEWUTS | unix.CLONE_NEWUSER, ""},
		{"no ids", &criucore.TaskKobjIdsEntry{}, 0, ""},
	} {
		got, err := CloneFlags(self, tc.root)
		switch {
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%s: error %v, want one naming %q", tc.name, err, tc.wantErr)
		case tc.wantErr == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case got != tc.want:
			t.Errorf("%s: flags %#x, want %#x", tc.name, got, tc.want)
		}
	}
}

// TestFieldsDistinct: every kind has its own field of the ids entry.
func TestFieldsDistinct(t *testing.T) {
	e := &criucore.TaskKobjIdsEntry{}
	seen := map[**uint32]Kind{}
	for _, k := range Kinds {
		f := field(e, k)
		if other, ok := seen[f]; ok {
			t.Errorf("%s and %s share a field", k.Name, other.Name)
		}
		seen[f] = k
	}
}

// TestParseExtNet: runc's net[INO]:KEY is read, another kind is not
// ours, a malformed one is an error naming it.
func TestParseExtNet(t *testing.T) {
	e, ok, err := ParseExtNet("net[4026532173]:extRootNetNS")
	if err != nil || !ok || e != (ExtNet{Ino: 4026532173, Key: "extRootNetNS"}) {
		t.Errorf("net: %+v %v %v", e, ok, err)
	}
	if _, ok, err := ParseExtNet("mnt[/x]:y"); ok || err != nil {
		t.Errorf("mnt: ok %v, err %v; want not ours", ok, err)
	}
	for _, bad := range []string{"net[x]:k", "net[1]:", "net[1]"} {
		if _, ok, err := ParseExtNet(bad); !ok || err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("%q: ok %v, err %v; want an error naming it", bad, ok, err)
		}
	}
}
