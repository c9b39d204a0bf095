package files

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/tty"
	"golang.org/x/sys/unix"

	"amber/internal/idmap"
	"amber/internal/proc"
)

// TtyInput is what making the terminals of a restore needs.
type TtyInput struct {
	Files    Index
	Images   *TtyImages // nil: the dump has no terminal
	ShellJob bool
	Procs    []TtyProc // every process of the tree
	// OrphanPts lets a slave whose master was not dumped come back with
	// a new master (OpenOrphan), instead of needing ShellJob.
	OrphanPts bool
	// Users are the maps of the tree's user namespace (nil: none), whose
	// view the owners of the images are.
	Users *idmap.Pair
}

// Terminals are the terminals amber makes for a restore. Tasks take their
// descriptors from amber (Fds); amber closes its own once every task has
// taken them (Close).
type Terminals struct {
	// Fds is, for each TTY file of the images, the descriptor of amber's
	// that the task holding it takes.
	Fds map[uint32]TtyFd
	// Warnings say what could not be had back exactly.
	Warnings []string
	in       TtyInput
	groups   []*ttyGroup       // the terminals of the images (ttyGroups)
	choices  []cttyChoice      // who gets which back as controlling terminal
	cttys    map[int]Ctty      // by session leader
	shell    *tty.TtyInfoEntry // the dumped state of a --shell-job's terminal
	own      []int             // amber's descriptors
	peers    map[*ttyGroup]int // amber's slave of each pty it made
	// orphan is the pty whose master was not dumped, made by OpenOrphan,
	// and orphanCtty the session leader that takes it back, if any.
	orphan     *ttyGroup
	orphanCtty *cttyChoice
	files      Index
	premade    map[uint32]int // masters of ptys made while mounting (AdoptPtys)
	// reopen: the tasks cannot see amber (SetReopen).
	reopen bool
}

// PrepareTerminals sorts the terminals of the images and chooses who
// gets each back as controlling terminal; nothing is opened yet (Open):
// the images are checked before any process is made.
func PrepareTerminals(in TtyInput) (*Terminals, error) {
	groups, err := ttyGroups(in.Files, in.Images, in.ShellJob, in.OrphanPts)
	if err != nil {
		return nil, err
	}
	t := &Terminals{Fds: map[uint32]TtyFd{}, cttys: map[int]Ctty{}, peers: map[*ttyGroup]int{}, files: in.Files, in: in, groups: groups}
	for _, g := range groups {
		if g.orphan {
			t.orphan = g
		}
	}
	t.choices, t.Warnings = chooseCttys(groups, in.Procs)
	return t, nil
}

// Any tells whether the images have a terminal file.
func (t *Terminals) Any() bool { return t != nil && len(t.groups) > 0 }

// Open makes the terminals of the images, in the devpts the tree sees
// from root ("/": amber's own; /proc/PID/root for a tree with a mount
// namespace of its own, once its mounts are made): a new pty for each
// one whose master was dumped (with the dumped index if it is free) or
// that was hung up, amber's standard input for a --shell-job's. The
// orphan pty waits for OpenOrphan.
func (t *Terminals) Open(root string) error {
	if !t.Any() {
		return nil
	}
	r, err := openTreeRoot(root)
	if err != nil {
		return err
	}
	defer r.close()
	for _, g := range t.groups {
		if g.orphan {
			continue
		}
		if err := t.open(g, r); err != nil {
			t.Close()
			return err
		}
	}
	for _, c := range t.choices {
		if c.group.orphan {
			t.orphanCtty = &c
			continue
		}
		t.addCtty(c)
	}
	return nil
}

// open makes terminal g, or takes amber's for it.
func (t *Terminals) open(g *ttyGroup, r treeRoot) error {
	if g.vt {
		return t.openVT(g, t.files, r)
	}
	if !g.inherit {
		if err := t.openPty(g, r); err != nil {
			return fmt.Errorf("%v: %w", g, err)
		}
		return nil
	}
	for _, f := range g.slaves {
		t.Fds[f.GetId()] = TtyFd{Fd: 0, What: "amber's terminal"}
	}
	switch {
	case g.slave.GetTermios() == nil:
	case t.shell != nil:
		t.Warnings = append(t.Warnings, fmt.Sprintf("pty %d is amber's terminal too, with the termios of the first", g.index))
	case !isTerminalFd(0):
		t.Warnings = append(t.Warnings, "amber's standard input is not a terminal: the shell job's terminal settings are not restored")
	default:
		t.shell = g.slave
	}
	return nil
}

// openPty makes a pty for g under root r: master, slaves, then the
// dumped state. A pty made while mounting (AdoptPtys) is g's already.
func (t *Terminals) openPty(g *ttyGroup, r treeRoot) error {
	path, flags := "/dev/ptmx", uint32(unix.O_RDWR)
	if len(g.masters) > 0 {
		flags = g.masters[0].GetTty().GetFlags()
		if p := ttyPath(t.files, g.masters[0]); filepath.Base(p) == "ptmx" {
			path = p
		}
	}
	m, ok := t.premade[g.index]
	index := g.index
	if !ok {
		var err error
		open := func() (int, error) { return r.open(path, int(flags&reopenFlags)|unix.O_NOCTTY|unix.O_CLOEXEC) }
		if m, index, err = OpenPtmxIndex(open, path, g.index); err != nil {
			return err
		}
		t.own = append(t.own, m)
	}
	if err := t.setUpPty(g, t.files, t.in.Images, m, index); err != nil {
		return err
	}
	if len(g.masters) == 0 {
		// Hung up at the dump: the slaves lose their master again.
		t.closeOwn(m)
	}
	return nil
}

// setUpPty gives the new pty of g, master m (amber's) with the given
// index, its slaves, then the dumped state, and records the
// descriptors tasks take.
func (t *Terminals) setUpPty(g *ttyGroup, idx Index, imgs *TtyImages, m int, index uint32) error {
	if index != g.index {
		t.Warnings = append(t.Warnings, fmt.Sprintf("pty %d is taken: restored as pty %d, its slave is /dev/pts/%d now", g.index, index, index))
	}
	what := fmt.Sprintf("pty %d", index)
	if err := unix.IoctlSetPointerInt(m, unix.TIOCSPTLCK, 0); err != nil {
		return fmt.Errorf("unlock: %w", err)
	}
	if err := t.openSlaves(g, idx, m, what); err != nil {
		return err
	}
	if err := setPtyState(g, m, t.peers[g], imgs); err != nil {
		return err
	}
	for _, f := range g.masters {
		t.Fds[f.GetId()] = TtyFd{Fd: m, What: what + " master", Master: true}
	}
	return nil
}

// openSlaves opens each slave file of g, and one slave for amber.
func (t *Terminals) openSlaves(g *ttyGroup, idx Index, m int, what string) error {
	for _, f := range g.slaves {
		fd, err := openPeer(m, f.GetTty().GetFlags())
		if err != nil {
			return fmt.Errorf("file id %d: %w", f.GetId(), err)
		}
		t.own = append(t.own, fd)
		t.Fds[f.GetId()] = TtyFd{Fd: fd, What: what + " slave"}
	}
	peer, err := openPeer(m, unix.O_RDWR)
	if err != nil {
		return err
	}
	t.own = append(t.own, peer)
	t.peers[g] = peer
	if len(g.slaves) > 0 {
		return setSlaveInode(peer, g.slave, idx[g.slaves[0].GetTty().GetRegfId()], t.in.Users)
	}
	return nil
}

// OpenPtmxIndex opens a ptmx (open; path names it in errors) until the
// new pty has index want, keeping the lower ones open meanwhile: devpts
// gives the lowest free index and takes no wish. If want is taken, the
// lowest free index does.
func OpenPtmxIndex(open func() (int, error), path string, want uint32) (fd int, index uint32, err error) {
	type opened struct {
		fd    int
		index uint32
	}
	var all []opened
	defer func() {
		for _, o := range all {
			if o.fd != fd {
				unix.Close(o.fd)
			}
		}
	}()
	for len(all) < maxPtmxOpens {
		fd, err := open()
		if err != nil {
			return -1, 0, fmt.Errorf("open %s: %w", path, err)
		}
		n, err := unix.IoctlGetUint32(fd, unix.TIOCGPTN)
		all = append(all, opened{fd, n})
		if err != nil {
			return -1, 0, fmt.Errorf("%s: TIOCGPTN: %w", path, err)
		}
		if n == want {
			return fd, n, nil
		}
		if n > want {
			break
		}
	}
	return all[0].fd, all[0].index, nil
}

// maxPtmxOpens bounds the ptys opened to reach an index: the default
// kernel.pty.max.
const maxPtmxOpens = 4096

// openPeer opens the slave of master m with open flags (TIOCGPTPEER),
// never as a controlling terminal.
func openPeer(m int, flags uint32) (int, error) {
	fl := int(flags&reopenFlags) | unix.O_NOCTTY | unix.O_CLOEXEC
	r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(m), unix.TIOCGPTPEER, uintptr(fl))
	if errno != 0 {
		return -1, fmt.Errorf("TIOCGPTPEER: %w", errno)
	}
	return int(r), nil
}

// setSlaveInode gives the slave's /dev/pts node its dumped owner (in
// amber's view: users) and mode (grantpt sets them on the original).
func setSlaveInode(fd int, info *tty.TtyInfoEntry, reg *fdinfo.FileEntry, users *idmap.Pair) error {
	if info.Uid != nil && info.Gid != nil {
		uid, err := users.OuterUid(info.GetUid())
		if err != nil {
			return fmt.Errorf("slave: %w", err)
		}
		gid, err := users.OuterGid(info.GetGid())
		if err != nil {
			return fmt.Errorf("slave: %w", err)
		}
		if err := unix.Fchown(fd, int(uid), int(gid)); err != nil {
			return fmt.Errorf("slave: fchown %d:%d: %w", uid, gid, err)
		}
	}
	if mode := reg.GetReg().GetMode(); mode != 0 {
		if err := unix.Fchmod(fd, mode&0o7777); err != nil {
			return fmt.Errorf("slave: fchmod %#o: %w", mode&0o7777, err)
		}
	}
	return nil
}

// setPtyState sets what the dump saw of pty g on its master m and
// amber's slave peer: termios, window size, packet mode, queued bytes,
// lock and exclusive modes.
func setPtyState(g *ttyGroup, m, peer int, imgs *TtyImages) error {
	state := g.master
	if state == nil {
		state = g.slave
	}
	if err := setTermios(m, state); err != nil {
		return err
	}
	if g.master.GetPacketMode() {
		if err := unix.IoctlSetPointerInt(m, unix.TIOCPKT, 1); err != nil {
			return fmt.Errorf("packet mode: %w", err)
		}
	}
	if imgs != nil {
		// What the master would have read was written by the slave, and
		// the other way round: each goes in again at the other end.
		writeAll(peer, imgs.Data[ttyInfoID(g.index, ptyMaster)])
		writeAll(m, imgs.Data[ttyInfoID(g.index, ptySlave)])
	}
	if g.master.GetLocked() {
		if err := unix.IoctlSetPointerInt(m, unix.TIOCSPTLCK, 1); err != nil {
			return fmt.Errorf("lock: %w", err)
		}
	}
	for _, s := range []struct {
		on bool
		fd int
	}{{g.master.GetExclusive(), m}, {g.slave.GetExclusive(), peer}} {
		if s.on {
			if err := unix.IoctlSetInt(s.fd, unix.TIOCEXCL, 0); err != nil {
				return fmt.Errorf("exclusive mode: %w", err)
			}
		}
	}
	return nil
}

// setTermios sets the locked termios, termios and window size of info on
// terminal fd, in that order: locked bits constrain what TCSETS may
// change.
func setTermios(fd int, info *tty.TtyInfoEntry) error {
	if e := info.GetTermiosLocked(); e != nil {
		if err := setLockedTermios(fd, e); err != nil {
			return err
		}
	}
	if e := info.GetTermios(); e != nil {
		tm, err := termiosOf(e)
		if err != nil {
			return err
		}
		req := uint(unix.TCSETS)
		if tm.Ispeed != 0 || tm.Ospeed != 0 {
			req = unix.TCSETS2 // speeds beyond the baud bits of c_cflag
		}
		if err := unix.IoctlSetTermios(fd, req, tm); err != nil {
			return fmt.Errorf("termios: %w", err)
		}
	}
	if e := info.GetWinsize(); e != nil {
		if err := unix.IoctlSetWinsize(fd, unix.TIOCSWINSZ, winsizeOf(e)); err != nil {
			return fmt.Errorf("window size: %w", err)
		}
	}
	return nil
}

// setLockedTermios sets the locked termios, which needs CAP_SYS_ADMIN;
// without it, locked termios equal to the present ones are fine.
func setLockedTermios(fd int, e *tty.TermiosEntry) error {
	tm, err := termiosOf(e)
	if err != nil {
		return err
	}
	err = unix.IoctlSetTermios(fd, unix.TIOCSLCKTRMIOS, tm)
	if errors.Is(err, unix.EPERM) {
		if cur, gerr := unix.IoctlGetTermios(fd, unix.TIOCGLCKTRMIOS); gerr == nil {
			cur.Ispeed, cur.Ospeed = tm.Ispeed, tm.Ospeed // TIOCGLCKTRMIOS fills no speeds
			if *cur == *tm {
				return nil
			}
		}
	}
	if err != nil {
		return fmt.Errorf("locked termios: %w", err)
	}
	return nil
}

// addCtty records the controlling terminal leader c gets: amber's slave
// of a pty it made, or amber's own terminal when nobody controls it.
func (t *Terminals) addCtty(c cttyChoice) {
	ctty := Ctty{Pgrp: c.pgrp, What: c.group.String()}
	if !c.group.inherit {
		ctty.Fd = t.peers[c.group]
		t.cttys[c.leader] = ctty
		return
	}
	if !isTerminalFd(0) {
		t.Warnings = append(t.Warnings, fmt.Sprintf("pid %d led the session of its terminal, but amber's standard input is not a terminal: pid %d comes back without a controlling terminal", c.leader, c.leader))
		return
	}
	if holder, ok := cttyHolder(0); ok {
		t.Warnings = append(t.Warnings, fmt.Sprintf("pid %d led the session of its terminal, but amber's terminal controls the session of pid %d: pid %d comes back without a controlling terminal", c.leader, holder, c.leader))
		return
	}
	t.cttys[c.leader] = ctty
}

// NewTerminals returns terminals made elsewhere: fds by TTY file id, and
// the controlling terminal of each session leader. Tests use it.
func NewTerminals(fds map[uint32]TtyFd, cttys map[int]Ctty) *Terminals {
	return &Terminals{Fds: fds, cttys: cttys}
}

// Ctty is the controlling terminal session leader pid gets back.
func (t *Terminals) Ctty(pid int) (Ctty, bool) {
	if t == nil {
		return Ctty{}, false
	}
	c, ok := t.cttys[pid]
	c.Reopen = t.reopen
	return c, ok
}

// SetReopen tells that the tasks are in a new pid namespace, where they
// cannot see amber: a session leader opens its controlling terminal
// again through amber's /proc (Ctty.Reopen).
func (t *Terminals) SetReopen() {
	if t != nil {
		t.reopen = true
	}
}

// AmberFds are amber's descriptors the tasks take: the terminals it
// made and the controlling terminals of the session leaders.
func (t *Terminals) AmberFds() []int {
	if t == nil {
		return nil
	}
	var fds []int
	for _, id := range slices.Sorted(maps.Keys(t.Fds)) {
		fds = append(fds, t.Fds[id].Fd)
	}
	for _, pid := range slices.Sorted(maps.Keys(t.cttys)) {
		fds = append(fds, t.cttys[pid].Fd)
	}
	return fds
}

// FileFds is Fds, nil for no terminals.
func (t *Terminals) FileFds() map[uint32]TtyFd {
	if t == nil {
		return nil
	}
	return t.Fds
}

// Finish gives amber's terminal the termios and window size the shell
// job's terminal had, as CRIU does: the job expects them (an editor in
// raw mode). Unlike CRIU, locked termios stay as they are: the terminal
// is the user's. SIGTTOU is ignored meanwhile, in case amber runs in the
// background of its terminal.
func (t *Terminals) Finish() error {
	if t == nil || t.shell == nil {
		return nil
	}
	state := &tty.TtyInfoEntry{Termios: t.shell.GetTermios(), Winsize: t.shell.GetWinsize()}
	if ws, err := unix.IoctlGetWinsize(0, unix.TIOCGWINSZ); err == nil && state.Winsize != nil && *ws == *winsizeOf(state.Winsize) {
		state.Winsize = nil // unchanged: no SIGWINCH for the job
	}
	signal.Ignore(unix.SIGTTOU)
	defer signal.Reset(unix.SIGTTOU)
	if err := setTermios(0, state); err != nil {
		return fmt.Errorf("amber's terminal: %w", err)
	}
	return nil
}

// Close closes amber's descriptors of the terminals.
func (t *Terminals) Close() {
	if t == nil {
		return
	}
	for _, fd := range t.own {
		unix.Close(fd)
	}
	t.own = nil
}

func (t *Terminals) closeOwn(fd int) {
	for i, o := range t.own {
		if o == fd {
			t.own = append(t.own[:i], t.own[i+1:]...)
			break
		}
	}
	unix.Close(fd)
}

// isTerminalFd tells whether fd is a terminal.
func isTerminalFd(fd int) bool {
	_, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	return err == nil
}

// cttyHolder finds a process whose controlling terminal is the terminal
// at fd: TIOCSCTTY would fail on it. /proc/PID/stat names a controlling
// terminal by its device number alone, which the ptys of every devpts
// instance share (a container's /dev/pts/0 is 136:0 as the host's is):
// a process counts only if its own view of the terminal's path is the
// same terminal (sameTerminal).
func cttyHolder(fd int) (int, bool) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, false
	}
	path, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd))
	if err != nil {
		return 0, false
	}
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		return 0, false
	}
	for _, d := range dirs {
		var pid int
		if _, err := fmt.Sscan(d.Name(), &pid); err != nil || strings.TrimLeft(d.Name(), "0123456789") != "" {
			continue
		}
		if s, err := proc.ReadStat(pid); err == nil && uint64(s.TtyNr) == st.Rdev && sameTerminal(pid, path, &st) {
			return pid, true
		}
	}
	return 0, false
}

// sameTerminal tells whether path, seen from the root of pid, is the
// terminal st is the stat of: the same device in the same devpts.
func sameTerminal(pid int, path string, st *unix.Stat_t) bool {
	var there unix.Stat_t
	if err := unix.Stat(fmt.Sprintf("/proc/%d/root%s", pid, path), &there); err != nil {
		return false
	}
	return there.Rdev == st.Rdev && there.Dev == st.Dev
}
