package files

import (
	"fmt"
	"os"
	"syscall"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/tty"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/proc"
)

// Virtual terminals (VT: major 4, minors 1 to 63), as CRIU has them
// without --shell-job: each open file is a TTY file of its path, and the
// terminal one tty-info entry of type VT with the session it controls.
// The restore opens each file again by its path, in amber, and the
// session leader takes one of them as its controlling terminal again
// (TIOCSCTTY), as with a pty. CRIU numbers every VT alike (its VT_INDEX):
// one dump holds one VT.

const (
	ttyMajor   = 4    // TTY_MAJOR: virtual consoles and serial lines
	vtMaxMinor = 63   // MAX_NR_CONSOLES
	vtInfoID   = 2008 // CRIU's VT_INDEX (1004) << 1
)

// isVT tells a virtual terminal.
func isVT(st os.FileInfo) bool {
	s, ok := st.Sys().(*syscall.Stat_t)
	if !ok || st.Mode()&os.ModeCharDevice == 0 {
		return false
	}
	minor := unix.Minor(s.Rdev)
	return unix.Major(s.Rdev) == ttyMajor && minor >= 1 && minor <= vtMaxMinor
}

// addVT records a descriptor of a virtual terminal, and the terminal the
// first time it is seen.
func (d *Dumper) addVT(pid, fd int, path string, st os.FileInfo, flags uint32) (uint32, fdinfo.FdTypes, error) {
	if d.ttys == nil {
		d.ttys = &ttyDump{sides: map[uint32]*dumpedSide{}}
	}
	rdev := st.Sys().(*syscall.Stat_t).Rdev
	if s, ok := d.ttys.sides[vtInfoID]; ok {
		if s.rdev != rdev {
			return 0, 0, fmt.Errorf("%s: a second virtual terminal (%d:%d, after %s): not supported (as with criu)",
				path, unix.Major(rdev), unix.Minor(rdev), s.path)
		}
		return d.addTtyFile(path, flags, st, vtInfoID), fdinfo.FdTypes_TTY, nil
	}
	copyFd, err := proc.CopyFd(pid, fd)
	if err != nil {
		return 0, 0, err
	}
	info, err := readVtInfo(copyFd, pid, d.inward(st.Sys().(*syscall.Stat_t)))
	if err != nil {
		unix.Close(copyFd)
		return 0, 0, fmt.Errorf("%s: %w", path, err)
	}
	d.ttys.sides[vtInfoID] = &dumpedSide{info: info, copy: copyFd, pid: pid, fd: fd, path: path, rdev: rdev}
	d.ttys.order = append(d.ttys.order, vtInfoID)
	return d.addTtyFile(path, flags, st, vtInfoID), fdinfo.FdTypes_TTY, nil
}

// readVtInfo reads a virtual terminal's state through fd, a copy of a
// descriptor of pid: the session it controls is pid's if it is pid's
// controlling terminal.
func readVtInfo(fd, pid int, st *syscall.Stat_t) (*tty.TtyInfoEntry, error) {
	e := &tty.TtyInfoEntry{
		Id: proto.Uint32(vtInfoID), Type: tty.TtyType_VT.Enum(),
		Rdev: proto.Uint32(uint32(st.Rdev)), Dev: proto.Uint32(uint32(st.Dev)),
		Uid: proto.Uint32(st.Uid), Gid: proto.Uint32(st.Gid),
		Locked: proto.Bool(false), Exclusive: proto.Bool(false), PacketMode: proto.Bool(false),
	}
	sid, pgrp, err := ttySession(fd, pid, ptySlave, st.Rdev)
	if err != nil {
		return nil, err
	}
	e.Sid, e.Pgrp = proto.Uint32(uint32(sid)), proto.Uint32(uint32(pgrp))
	if err := readTermios(fd, e); err != nil {
		return nil, err
	}
	return e, nil
}

// openVT opens again each file of virtual terminal g by its path, in
// amber, as the tree sees it from root r; the first is what its session
// leader takes as its controlling terminal.
func (t *Terminals) openVT(g *ttyGroup, idx Index, r treeRoot) error {
	for _, f := range g.slaves {
		path := ttyPath(idx, f)
		fd, err := r.open(path, int(f.GetTty().GetFlags()&reopenFlags)|unix.O_NOCTTY|unix.O_CLOEXEC)
		if err != nil {
			return fmt.Errorf("file id %d: open %s: %w", f.GetId(), path, err)
		}
		t.own = append(t.own, fd)
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return fmt.Errorf("file id %d: stat %s: %w", f.GetId(), path, err)
		}
		if want := g.slave.GetRdev(); uint32(st.Rdev) != want || st.Mode&unix.S_IFMT != unix.S_IFCHR {
			return fmt.Errorf("file id %d: %s is not the virtual terminal %d:%d any more", f.GetId(), path,
				unix.Major(uint64(want)), unix.Minor(uint64(want)))
		}
		t.Fds[f.GetId()] = TtyFd{Fd: fd, What: g.String()}
		if _, ok := t.peers[g]; !ok {
			t.peers[g] = fd
		}
	}
	return nil
}
