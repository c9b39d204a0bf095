package files

import (
	"encoding/binary"
	"fmt"
	"maps"
	"slices"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/tty"
	"golang.org/x/sys/unix"

	"amber/internal/image"
	"amber/internal/plan"
)

// Terminals, restore side. The TTY files of the images are sorted into
// terminals (ttyGroups), a pure step, before any process is made
// (PrepareTerminals). Then amber itself makes each pty, once the tree's
// mounts are made and before any task is planned (Terminals.Open): it
// opens the tree's ptmx (its devpts, as the tree's /dev/pts shows it)
// until it gets the dumped index (devpts gives the lowest free index and
// takes no wish, so this is CRIU's way too), sets termios, window size,
// modes and queued bytes, and opens each slave file with TIOCGPTPEER. A
// task takes its descriptors from amber with pidfd_getfd (makeTty), as it
// takes the terminal of a --shell-job, which is amber's standard input;
// in a new pid namespace, where amber has no PID, the root takes them all
// through the pidfd of amber it starts with and the others take them from
// the root (takeTerminals). A session leader gets its controlling
// terminal back right after setsid (PlanCtty) and gives the foreground to
// the dumped process group once every process is in its group
// (PlanForeground).

// TtyImages are tty-info.img and tty-data.img read back.
type TtyImages struct {
	Infos map[uint32]*tty.TtyInfoEntry // by info id
	// Data are the bytes queued in ptys, by the info id of the side that
	// would have read them.
	Data map[uint32][]byte
}

// readTtyImages reads tty-info.img and tty-data.img; nil if the dump has
// no terminal.
func readTtyImages(dir image.Dir) (*TtyImages, error) {
	var infos []*tty.TtyInfoEntry
	err := image.EachEntry(dir.TtyInfoPath(), image.TtyInfo, func(r *image.Reader) error {
		e := new(tty.TtyInfoEntry)
		if err := r.Next(e); err != nil {
			return err
		}
		infos = append(infos, e)
		return nil
	})
	if err != nil || len(infos) == 0 {
		return nil, err
	}
	imgs := &TtyImages{Infos: map[uint32]*tty.TtyInfoEntry{}, Data: map[uint32][]byte{}}
	for _, e := range infos {
		imgs.Infos[e.GetId()] = e
	}
	err = image.EachEntry(dir.TtyDataPath(), image.TtyData, func(r *image.Reader) error {
		e := new(tty.TtyDataEntry)
		if err := r.Next(e); err != nil {
			return err
		}
		imgs.Data[e.GetTtyId()] = append(imgs.Data[e.GetTtyId()], e.GetData()...)
		return nil
	})
	return imgs, err
}

// ttyGroup is one terminal of the images and its files.
type ttyGroup struct {
	index         uint32
	master, slave *tty.TtyInfoEntry   // nil: that side was not dumped
	masters       []*fdinfo.FileEntry // TTY files of the master
	slaves        []*fdinfo.FileEntry // TTY files of the slave
	// inherit: the terminal of a --shell-job, whose other end was not
	// dumped; the task gets amber's standard input instead.
	inherit bool
	// vt: a virtual terminal (slave is its info, slaves its files),
	// opened again by path (tty_vt.go).
	vt bool
	// orphan: a slave whose master was outside the tree (a container's
	// terminal): amber makes a new pty once the tree's mounts are made
	// and hands its master to the client (OpenOrphan).
	orphan bool
}

func (g *ttyGroup) String() string {
	if g.inherit {
		return "amber's terminal"
	}
	if g.vt {
		return fmt.Sprintf("virtual terminal %d:%d", unix.Major(uint64(g.slave.GetRdev())), unix.Minor(uint64(g.slave.GetRdev())))
	}
	return fmt.Sprintf("pty %d", g.index)
}

// controls is the session the terminal controlled and its foreground
// process group, as the master (or else the slave) saw them.
func (g *ttyGroup) controls() (sid, pgrp int) {
	info := g.master
	if info == nil {
		info = g.slave
	}
	return int(info.GetSid()), int(info.GetPgrp())
}

// hungUp tells a terminal whose master was closed before the dump.
func (g *ttyGroup) hungUp() bool { return g.master == nil && g.slave.GetTermios() == nil }

// ttyGroups sorts the TTY files of idx into terminals, in order of index,
// amber's own terminal (a --shell-job's) first. orphan allows one slave
// whose master was not dumped to get a new master (ttyGroup.orphan).
func ttyGroups(idx Index, imgs *TtyImages, shellJob, orphan bool) ([]*ttyGroup, error) {
	byIndex := map[uint32]*ttyGroup{}
	var shell, vt *ttyGroup
	for _, id := range slices.Sorted(maps.Keys(idx)) {
		e := idx[id]
		if e.GetType() != fdinfo.FdTypes_TTY {
			continue
		}
		info, err := ttyInfoOf(e, imgs)
		if err != nil {
			return nil, err
		}
		if info.GetType() == tty.TtyType_VT && !shellJob {
			if vt == nil {
				vt = &ttyGroup{vt: true, slave: info}
			}
			vt.slaves = append(vt.slaves, e)
			continue
		}
		if info.GetType() != tty.TtyType_PTY {
			if !shellJob {
				return nil, fmt.Errorf("file id %d: a %v terminal needs --shell-job", id, info.GetType())
			}
			if shell == nil {
				shell = &ttyGroup{inherit: true}
			}
			shell.slaves = append(shell.slaves, e)
			continue
		}
		g := byIndex[info.GetPty().GetIndex()]
		if g == nil {
			g = &ttyGroup{index: info.GetPty().GetIndex()}
			byIndex[g.index] = g
		}
		g.add(e, info)
	}
	var out []*ttyGroup
	if shell != nil {
		out = append(out, shell)
	}
	if vt != nil {
		out = append(out, vt)
	}
	var orphaned *ttyGroup
	for _, i := range slices.Sorted(maps.Keys(byIndex)) {
		g := byIndex[i]
		if err := g.check(idx, shellJob, orphan); err != nil {
			return nil, err
		}
		if g.orphan && orphaned != nil {
			return nil, fmt.Errorf("file ids %d and %d: ptys %d and %d both lack their master: orphan_pts_master allows one", orphaned.slaves[0].GetId(), g.slaves[0].GetId(), orphaned.index, g.index)
		}
		if g.orphan {
			orphaned = g
		}
		out = append(out, g)
	}
	return out, nil
}

// ttyInfoOf finds the tty-info entry of TTY file e.
func ttyInfoOf(e *fdinfo.FileEntry, imgs *TtyImages) (*tty.TtyInfoEntry, error) {
	infoID := e.GetTty().GetTtyInfoId()
	var info *tty.TtyInfoEntry
	if imgs != nil {
		info = imgs.Infos[infoID]
	}
	if info == nil {
		return nil, fmt.Errorf("file id %d: tty-info.img has no terminal %#x", e.GetId(), infoID)
	}
	if info.GetType() == tty.TtyType_PTY && info.GetPty() == nil {
		return nil, fmt.Errorf("file id %d: tty %#x is a pty without an index", e.GetId(), infoID)
	}
	return info, nil
}

// add puts TTY file e, of the side info describes, in the group.
func (g *ttyGroup) add(e *fdinfo.FileEntry, info *tty.TtyInfoEntry) {
	if ttyInfoSide(info.GetId()) == ptyMaster {
		g.master, g.masters = info, append(g.masters, e)
		return
	}
	g.slave, g.slaves = info, append(g.slaves, e)
}

// check decides how the terminal comes back: made by amber if its master
// was dumped or it was hung up; otherwise with a new master handed to
// the client if orphan, or amber's own terminal for a --shell-job.
func (g *ttyGroup) check(idx Index, shellJob, orphan bool) error {
	if len(g.masters) > 1 {
		return fmt.Errorf("pty %d: %d master files (ids %d, %d): one pty has one master", g.index, len(g.masters), g.masters[0].GetId(), g.masters[1].GetId())
	}
	if g.master != nil && g.master.GetTermios() == nil {
		return fmt.Errorf("pty %d: its master has no termios in tty-info.img", g.index)
	}
	if g.master != nil || g.hungUp() {
		return nil
	}
	if orphan {
		g.orphan = true
		return nil
	}
	if !shellJob {
		f := g.slaves[0]
		return fmt.Errorf("file id %d: %s: a terminal whose master is not dumped needs --shell-job", f.GetId(), ttyPath(idx, f))
	}
	g.inherit = true
	return nil
}

// ttyPath is the path dump recorded for TTY file e.
func ttyPath(idx Index, e *fdinfo.FileEntry) string {
	if r := idx[e.GetTty().GetRegfId()].GetReg(); r != nil {
		return r.GetName()
	}
	return fmt.Sprintf("tty %#x", e.GetTty().GetTtyInfoId())
}

// TtyProc is one process of the restored tree, as terminals see it.
type TtyProc struct{ Pid, Sid, Pgid int }

// cttyChoice is the terminal a session leader gets back as its
// controlling terminal, and the foreground group to give it (0: the
// leader's own, which TIOCSCTTY gives).
type cttyChoice struct {
	group  *ttyGroup
	leader int
	pgrp   int
}

// chooseCttys finds, for each terminal that controlled a session, the
// session leader that takes it back. A session whose leader is not in
// the tree, or a foreground group no process of the session has, cannot
// be had again: they are warnings.
func chooseCttys(groups []*ttyGroup, procs []TtyProc) ([]cttyChoice, []string) {
	byPid := map[int]TtyProc{}
	for _, p := range procs {
		byPid[p.Pid] = p
	}
	var out []cttyChoice
	var warnings []string
	for _, g := range groups {
		sid, pgrp := g.controls()
		if sid == 0 || g.hungUp() {
			continue
		}
		if p, ok := byPid[sid]; !ok || p.Sid != sid {
			if !g.inherit {
				warnings = append(warnings, fmt.Sprintf("%v controlled session %d, whose leader is not restored: it is nobody's controlling terminal now", g, sid))
			}
			continue
		}
		c := cttyChoice{group: g, leader: sid}
		if pgrp != sid && pgrp != 0 {
			if !slices.ContainsFunc(procs, func(p TtyProc) bool { return p.Pgid == pgrp && p.Sid == sid }) {
				warnings = append(warnings, fmt.Sprintf("%v: its foreground process group %d is not restored: session %d keeps its own in the foreground", g, pgrp, sid))
			} else {
				c.pgrp = pgrp
			}
		}
		out = append(out, c)
	}
	return out, warnings
}

// TtyFd is a descriptor of amber's that a task takes a terminal from.
type TtyFd struct {
	Fd   int
	What string
	// Master: a pty master, which only pidfd_getfd can give (opening it
	// again would make a new pty).
	Master bool
}

// Ctty is the controlling terminal of a restored session: amber's
// descriptor of it and the process group to put in its foreground (0:
// the leader's own).
type Ctty struct {
	Fd   int
	What string
	Pgrp int
	// Reopen: the leader, in a new pid namespace, cannot see amber to
	// pidfd_getfd from it: it opens the terminal again through amber's
	// /proc (the tree's until its mounts are finished), never as a
	// controlling terminal, before its TIOCSCTTY.
	Reopen bool
}

// PlanCtty plans giving the task, a session leader right after setsid,
// its controlling terminal back: it takes amber's descriptor of it,
// TIOCSCTTY, and closes it again (the terminal stays).
func PlanCtty(b *plan.Builder, amberPid int, c Ctty) {
	var fd int
	if c.Reopen {
		fd = b.Open(c.What, fmt.Sprintf("/proc/%d/fd/%d", amberPid, c.Fd), unix.O_RDWR|unix.O_NOCTTY, 0)
	} else {
		fd = planTake(b, amberPid, c.Fd, c.What)
	}
	b.Call(fmt.Sprintf("make %s the controlling terminal", c.What), unix.SYS_IOCTL, uint64(fd), unix.TIOCSCTTY, 0)
	b.Close(fd)
}

// PlanForeground plans putting process group c.Pgrp in the foreground of
// the task's controlling terminal: the task is the session leader, and
// every process of the tree is in its group by now. It goes through
// /dev/tty, which any identity may open, as the task may have dropped
// amber's by then.
func PlanForeground(b *plan.Builder, c Ctty) {
	if c.Pgrp == 0 {
		return
	}
	fd := b.Open("controlling terminal, "+c.What, "/dev/tty", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	pgrp := b.Bytes(binary.LittleEndian.AppendUint32(nil, uint32(c.Pgrp)))
	b.Call(fmt.Sprintf("put process group %d in the foreground of %s", c.Pgrp, c.What), unix.SYS_IOCTL, uint64(fd), unix.TIOCSPGRP, pgrp)
	b.Close(fd)
}

// makeTty gives the task the terminal file e: amber made it, or it is
// amber's own terminal (--shell-job). The task takes amber's very open
// file, as a pty master can be had no other way, and a slave opened
// again would fail once its master is closed (a hung-up pty) or locked.
func (p *fdPlanner) makeTty(e *fdinfo.FileEntry) (int, error) {
	t, ok := p.in.Ttys[e.GetId()]
	if !ok {
		return 0, fmt.Errorf("file id %d: %s: no terminal was made for it", e.GetId(), ttyPath(p.in.Files, e))
	}
	return p.takeFromAmber(t.Fd, fmt.Sprintf("file id %d (%s)", e.GetId(), t.What))
}

// takeTerminals has the root of a new pid namespace, the one task of
// the tree that holds a pidfd of amber, take every terminal file of the
// tree from amber and park it: those amber made, and with --shell-job
// those that are amber's own terminal (its standard input). The other
// tasks, which cannot name amber, inherit them or take them from the
// root (Shared).
func (p *fdPlanner) takeTerminals() {
	if !p.in.AmberHidden || p.amberPidfd == 0 {
		return
	}
	for _, id := range slices.Sorted(maps.Keys(p.in.Ttys)) {
		if _, ok := p.have[id]; ok {
			continue
		}
		t := p.in.Ttys[id]
		fd := planTakeVia(p.b, p.amberPidfd, t.Fd, fmt.Sprintf("file id %d (%s), for the tree", id, t.What))
		p.park(id, p.b.MoveAbove(fd, p.safe))
	}
	if !p.in.ShellJob {
		return
	}
	for _, id := range slices.Sorted(maps.Keys(p.in.Files)) {
		e := p.in.Files[id]
		if _, ok := p.have[id]; ok || e.GetType() != fdinfo.FdTypes_REG || !isTerminalPath(e.GetReg().GetName()) {
			continue
		}
		fd := planTakeVia(p.b, p.amberPidfd, p.in.Stdin, fmt.Sprintf("file id %d (%s, amber's terminal), for the tree", id, e.GetReg().GetName()))
		p.park(id, p.b.MoveAbove(fd, p.safe))
	}
}
