package files

import (
	"fmt"
	"testing"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/tty"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
)

// vt records virtual terminal 4:minor controlling session sid, with
// files files of it.
func (ti *ttyImages) vt(minor, sid uint32, files int) {
	ti.imgs.Infos[vtInfoID] = &tty.TtyInfoEntry{
		Id: proto.Uint32(vtInfoID), Type: tty.TtyType_VT.Enum(), Locked: proto.Bool(false), Exclusive: proto.Bool(false),
		PacketMode: proto.Bool(false), Sid: proto.Uint32(sid), Pgrp: proto.Uint32(sid), Rdev: proto.Uint32(uint32(unix.Mkdev(4, minor))),
		Termios: termiosEntry(&unix.Termios{}), TermiosLocked: termiosEntry(&unix.Termios{}), Winsize: winsizeEntry(&unix.Winsize{}),
	}
	for range files {
		ti.file(vtInfoID, ptySlave)
	}
}

// TestTtyGroupsVT: the files of a virtual terminal are one terminal that
// amber opens again, and its session leader takes it back; with
// --shell-job it is amber's terminal, as before.
func TestTtyGroupsVT(t *testing.T) {
	ti := newTtyImages()
	ti.vt(9, 40, 2)
	ti.side(3, ptyMaster, 0, 0, false)
	groups, err := ttyGroups(ti.idx, ti.imgs, false, false)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(describeGroups(groups)); got != "[virtual terminal 4:9: 0/2 pty 3: 1/0]" {
		t.Errorf("groups %s", got)
	}
	choices, warnings := chooseCttys(groups, []TtyProc{{Pid: 40, Sid: 40, Pgid: 40}})
	if len(choices) != 1 || choices[0].group != groups[0] || choices[0].leader != 40 || len(warnings) != 0 {
		t.Errorf("ctty choices %+v, warnings %v", choices, warnings)
	}
	groups, err = ttyGroups(ti.idx, ti.imgs, true, false)
	if err != nil || len(groups) != 2 || !groups[0].inherit || groups[0].vt {
		t.Errorf("--shell-job: %v, %v", describeGroups(groups), err)
	}
}
