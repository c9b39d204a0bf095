package files

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"syscall"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/tty"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/image"
	"amber/internal/proc"
)

// Terminals, dump side. A pty is a pair: the master, opened from
// /dev/ptmx, and the slave /dev/pts/N, N being the pty's index. As CRIU
// does, a dump records each open file of either side as a TTY file of
// files.img, with a REG entry naming its path (regf_id), and each side
// once in tty-info.img: termios, locked termios, window size, the lock,
// packet and exclusive modes, and the session and foreground process
// group the terminal controls. Info ids are CRIU's: index<<1 for the
// slave, index<<1|1 for the master. The bytes queued in a pty whose two
// sides are both dumped go to tty-data.img. Other terminals (/dev/tty,
// consoles) stay REG files that only a --shell-job may hold, but for the
// console and /dev/tty over a pty of the tree (tty_ctty.go); a virtual
// terminal is a TTY file too (tty_vt.go).

// ptySide tells a pty master from a pty slave.
type ptySide int

const (
	notPty ptySide = iota
	ptyMaster
	ptySlave
)

func (s ptySide) String() string {
	switch s {
	case ptyMaster:
		return "pty master"
	case ptySlave:
		return "pty slave"
	}
	return "not a pty"
}

// Device numbers of ptys (linux/major.h): /dev/ptmx is TTYAUX_MAJOR 5,
// minor 2; slaves have UNIX98_PTY_SLAVE_MAJOR 136 and the index as minor.
const (
	ttyAuxMajor   = 5
	ptmxMinor     = 2
	ptySlaveMajor = 136
	// ptySlaveMajors is how many majors old kernels spread slaves over.
	ptySlaveMajors = 8
)

// ptyOf tells whether st is a side of a pty, and which.
func ptyOf(st os.FileInfo) ptySide {
	s, ok := st.Sys().(*syscall.Stat_t)
	if !ok || st.Mode()&os.ModeCharDevice == 0 {
		return notPty
	}
	return ptyOfRdev(s.Rdev)
}

// ptyOfRdev tells a pty side by its device number.
func ptyOfRdev(rdev uint64) ptySide {
	major, minor := unix.Major(rdev), unix.Minor(rdev)
	switch {
	case major == ttyAuxMajor && minor == ptmxMinor:
		return ptyMaster
	case major >= ptySlaveMajor && major < ptySlaveMajor+ptySlaveMajors:
		return ptySlave
	}
	return notPty
}

// slaveIndex is the index of the pty whose slave has device rdev.
func slaveIndex(rdev uint64) uint32 {
	return (unix.Major(rdev)-ptySlaveMajor)<<8 + unix.Minor(rdev)
}

// ttyInfoID is CRIU's tty-info id of one side of pty index.
func ttyInfoID(index uint32, side ptySide) uint32 {
	if side == ptyMaster {
		return index<<1 | 1
	}
	return index << 1
}

// ttyInfoSide is the side a tty-info id names.
func ttyInfoSide(id uint32) ptySide {
	if id&1 == 1 {
		return ptyMaster
	}
	return ptySlave
}

// ttyDataMax bounds the bytes kept of one side's queue, as CRIU's 16 KiB
// does (a pty's queues hold a few KiB each).
const ttyDataMax = 64 << 10

// ttyDump is what a dump learned of ptys: each side seen, by info id.
type ttyDump struct {
	sides map[uint32]*dumpedSide
	order []uint32 // info ids in the order first seen
	// inward gives an owner as the tree's user namespace sees it
	// (Dumper.inward).
	inward func(*syscall.Stat_t) *syscall.Stat_t
}

// dumpedSide is one side of a pty as the dump found it.
type dumpedSide struct {
	info    *tty.TtyInfoEntry
	copy    int // amber's copy of the first descriptor seen, for its queue
	pid, fd int // that descriptor, for messages
	path    string
	hungUp  bool
	rdev    uint64
}

func (s *dumpedSide) String() string {
	return fmt.Sprintf("pid %d fd %d (%s, %s %d)", s.pid, s.fd, s.path, ptyOfRdev(s.rdev), s.info.GetPty().GetIndex())
}

// addTty records a descriptor of a pty side: a TTY file pointing to a
// REG entry of its path and, the first time the side is seen, the side's
// tty-info entry.
func (d *Dumper) addTty(pid, fd int, link string, st os.FileInfo, side ptySide, flags uint32) (uint32, fdinfo.FdTypes, error) {
	if d.ttys == nil {
		d.ttys = &ttyDump{sides: map[uint32]*dumpedSide{}, inward: d.inward}
	}
	path := strings.TrimSuffix(link, " (deleted)")
	s, err := d.ttys.side(pid, fd, path, st, side)
	if err != nil {
		return 0, 0, fmt.Errorf("%s: %w", path, err)
	}
	return d.addTtyFile(path, flags, st, s.info.GetId()), fdinfo.FdTypes_TTY, nil
}

// addTtyFile adds a TTY file of terminal infoID, pointing to a REG entry
// of its path.
func (d *Dumper) addTtyFile(path string, flags uint32, st os.FileInfo, infoID uint32) uint32 {
	t := d.Table
	regID := t.addReg(path, flags, 0, st)
	id := t.nextID()
	t.entries = append(t.entries, &fdinfo.FileEntry{Type: fdinfo.FdTypes_TTY.Enum(), Id: proto.Uint32(id), Tty: &tty.TtyFileEntry{
		Id: proto.Uint32(id), TtyInfoId: proto.Uint32(infoID), Flags: proto.Uint32(flags),
		Fown: newFown(), RegfId: proto.Uint32(regID),
	}})
	return id
}

// side returns the side of the pty behind pid's fd, reading its state
// the first time.
func (t *ttyDump) side(pid, fd int, path string, st os.FileInfo, side ptySide) (*dumpedSide, error) {
	// A bare copy, which no poller of Go's touches: reading the queues
	// sets and clears O_NONBLOCK on the open file it shares with the task.
	copyFd, err := proc.CopyFd(pid, fd)
	if err != nil {
		return nil, err
	}
	sys := st.Sys().(*syscall.Stat_t)
	index := slaveIndex(sys.Rdev)
	if side == ptyMaster {
		n, err := unix.IoctlGetUint32(copyFd, unix.TIOCGPTN)
		if err != nil {
			unix.Close(copyFd)
			return nil, fmt.Errorf("TIOCGPTN: %w", err)
		}
		index = n
	}
	id := ttyInfoID(index, side)
	if s, ok := t.sides[id]; ok {
		unix.Close(copyFd)
		return s, nil
	}
	s := &dumpedSide{copy: copyFd, pid: pid, fd: fd, path: path, rdev: sys.Rdev}
	if s.info, s.hungUp, err = readTtyInfo(copyFd, pid, side, index, t.inward(sys)); err != nil {
		unix.Close(copyFd)
		return nil, err
	}
	t.sides[id] = s
	t.order = append(t.order, id)
	return s, nil
}

// readTtyInfo reads the state of one pty side through fd, amber's copy
// of a descriptor pid holds. A side whose peer is gone answers EIO: it
// is hung up, and only its identity is recorded.
func readTtyInfo(fd, pid int, side ptySide, index uint32, st *syscall.Stat_t) (*tty.TtyInfoEntry, bool, error) {
	e := &tty.TtyInfoEntry{
		Id: proto.Uint32(ttyInfoID(index, side)), Type: tty.TtyType_PTY.Enum(),
		Rdev: proto.Uint32(uint32(st.Rdev)), Dev: proto.Uint32(uint32(st.Dev)),
		Uid: proto.Uint32(st.Uid), Gid: proto.Uint32(st.Gid),
		Pty: &tty.TtyPtyEntry{Index: proto.Uint32(index)},
	}
	sid, pgrp, err := ttySession(fd, pid, side, st.Rdev)
	if err != nil {
		return nil, false, err
	}
	e.Sid, e.Pgrp = proto.Uint32(uint32(sid)), proto.Uint32(uint32(pgrp))
	var modes [3]bool
	for i, req := range []uint{unix.TIOCGPTLCK, unix.TIOCGEXCL, unix.TIOCGPKT} {
		v, err := ttyFlag(fd, req)
		if errors.Is(err, unix.EIO) {
			e.Locked, e.Exclusive, e.PacketMode = proto.Bool(false), proto.Bool(false), proto.Bool(false)
			return e, true, nil
		}
		if err != nil {
			return nil, false, err
		}
		modes[i] = v
	}
	e.Locked, e.Exclusive, e.PacketMode = proto.Bool(modes[0]), proto.Bool(modes[1]), proto.Bool(modes[2])
	if err := readTermios(fd, e); err != nil {
		return nil, false, err
	}
	return e, false, nil
}

// ttyFlag reads an int-valued mode with req; ENOTTY (a mode the side
// does not have, such as the lock of a slave) reads as off.
func ttyFlag(fd int, req uint) (bool, error) {
	v, err := unix.IoctlGetInt(fd, req)
	if errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.EINVAL) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("%s: %w", ttyIoctlName(req), err)
	}
	return v != 0, nil
}

// readTermios fills the termios, locked termios and window size of e.
func readTermios(fd int, e *tty.TtyInfoEntry) error {
	t, err := unix.IoctlGetTermios(fd, unix.TCGETS2)
	if err != nil {
		return fmt.Errorf("TCGETS2: %w", err)
	}
	lt, err := unix.IoctlGetTermios(fd, unix.TIOCGLCKTRMIOS)
	if err != nil {
		return fmt.Errorf("TIOCGLCKTRMIOS: %w", err)
	}
	ws, err := unix.IoctlGetWinsize(fd, unix.TIOCGWINSZ)
	if err != nil {
		return fmt.Errorf("TIOCGWINSZ: %w", err)
	}
	e.Termios, e.TermiosLocked, e.Winsize = termiosEntry(t), termiosEntry(lt), winsizeEntry(ws)
	return nil
}

// ttySession is the session a pty side controls and its foreground
// process group, 0 and 0 if none. A master answers for its slave from
// anywhere; a slave answers only to a process whose controlling terminal
// it is, so the holder's /proc/PID/stat tells instead.
func ttySession(fd, pid int, side ptySide, rdev uint64) (sid, pgrp int, err error) {
	if side == ptyMaster {
		if sid, err = ttyPid(fd, unix.TIOCGSID); err != nil {
			return 0, 0, err
		}
		pgrp, err = ttyPid(fd, unix.TIOCGPGRP)
		return sid, pgrp, err
	}
	st, err := proc.ReadStat(pid)
	if err != nil {
		return 0, 0, err
	}
	if uint64(st.TtyNr) != rdev {
		return 0, 0, nil
	}
	return st.Session, max(st.Tpgid, 0), nil
}

// ttyPid reads a process id with req; ENOTTY (no session) reads as 0.
func ttyPid(fd int, req uint) (int, error) {
	v, err := unix.IoctlGetInt(fd, req)
	if errors.Is(err, unix.ENOTTY) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("%s: %w", ttyIoctlName(req), err)
	}
	return v, nil
}

func ttyIoctlName(req uint) string {
	names := map[uint]string{
		unix.TIOCGPTLCK: "TIOCGPTLCK", unix.TIOCGEXCL: "TIOCGEXCL", unix.TIOCGPKT: "TIOCGPKT",
		unix.TIOCGSID: "TIOCGSID", unix.TIOCGPGRP: "TIOCGPGRP",
	}
	if n, ok := names[req]; ok {
		return n
	}
	return fmt.Sprintf("ioctl %#x", req)
}

// termiosEntry is t as tty-info.img stores it.
func termiosEntry(t *unix.Termios) *tty.TermiosEntry {
	cc := make([]uint32, len(t.Cc))
	for i, c := range t.Cc {
		cc[i] = uint32(c)
	}
	return &tty.TermiosEntry{
		CIflag: proto.Uint32(t.Iflag), COflag: proto.Uint32(t.Oflag), CCflag: proto.Uint32(t.Cflag),
		CLflag: proto.Uint32(t.Lflag), CLine: proto.Uint32(uint32(t.Line)),
		CIspeed: proto.Uint32(t.Ispeed), COspeed: proto.Uint32(t.Ospeed), CCc: cc,
	}
}

// termiosOf is the termios e stores. CRIU leaves the speeds 0: they are
// then in the baud bits of c_cflag only.
func termiosOf(e *tty.TermiosEntry) (*unix.Termios, error) {
	t := &unix.Termios{
		Iflag: e.GetCIflag(), Oflag: e.GetCOflag(), Cflag: e.GetCCflag(), Lflag: e.GetCLflag(),
		Line: uint8(e.GetCLine()), Ispeed: e.GetCIspeed(), Ospeed: e.GetCOspeed(),
	}
	if len(e.GetCCc()) < len(t.Cc) {
		return nil, fmt.Errorf("termios has %d control characters, want %d", len(e.GetCCc()), len(t.Cc))
	}
	for i := range t.Cc {
		t.Cc[i] = uint8(e.GetCCc()[i])
	}
	return t, nil
}

func winsizeEntry(w *unix.Winsize) *tty.WinsizeEntry {
	return &tty.WinsizeEntry{
		WsRow: proto.Uint32(uint32(w.Row)), WsCol: proto.Uint32(uint32(w.Col)),
		WsXpixel: proto.Uint32(uint32(w.Xpixel)), WsYpixel: proto.Uint32(uint32(w.Ypixel)),
	}
}

func winsizeOf(e *tty.WinsizeEntry) *unix.Winsize {
	return &unix.Winsize{Row: uint16(e.GetWsRow()), Col: uint16(e.GetWsCol()), Xpixel: uint16(e.GetWsXpixel()), Ypixel: uint16(e.GetWsYpixel())}
}

// finish checks that every live slave has its master in the tree, or
// that the dump is a --shell-job (the slave is then the job's terminal,
// whose master a terminal emulator or sshd holds) or allows an orphan
// master (a container's terminal, whose master the engine handed out),
// then saves the bytes queued in each whole pty and writes tty-info.img
// and tty-data.img, their sessions and process groups as the images'
// PIDs (pidOf; nil: amber's). amber's copies are closed.
func (t *ttyDump) finish(dir image.Dir, opts DumpOptions, pidOf func(int) int) error {
	if t == nil {
		return nil
	}
	defer t.close()
	if err := t.checkPairs(opts.ShellJob, opts.OrphanPtsMaster); err != nil {
		return err
	}
	data, err := t.queued()
	if err != nil {
		return err
	}
	infos := make([]proto.Message, 0, len(t.order))
	for _, id := range t.order {
		info := t.sides[id].info
		if pidOf != nil {
			info.Sid, info.Pgrp = proto.Uint32(imagePid(info.GetSid(), pidOf)), proto.Uint32(imagePid(info.GetPgrp(), pidOf))
		}
		infos = append(infos, info)
	}
	if err := image.WriteFile(dir.TtyInfoPath(), image.TtyInfo, infos...); err != nil {
		return err
	}
	if len(data) == 0 {
		return nil
	}
	return image.WriteFile(dir.TtyDataPath(), image.TtyData, data...)
}

// imagePid is pid (a session or process group, 0 for none) as the
// images have it.
func imagePid(pid uint32, pidOf func(int) int) uint32 {
	if pid == 0 {
		return 0
	}
	return uint32(pidOf(int(pid)))
}

// checkPairs refuses a live slave whose master is outside the tree,
// unless the dump is a --shell-job, or allows orphan masters: then one
// such slave is allowed, as CRIU allows (the restore hands its new
// master to the client, which has one place for it).
func (t *ttyDump) checkPairs(shellJob, orphan bool) error {
	var unpaired *dumpedSide
	for _, id := range t.order {
		s := t.sides[id]
		if ttyInfoSide(id) != ptySlave || s.hungUp || s.info.GetType() != tty.TtyType_PTY {
			continue
		}
		if _, ok := t.sides[id|1]; ok {
			continue
		}
		switch {
		case orphan && unpaired != nil:
			return fmt.Errorf("%v and %v: two terminals whose masters are not dumped: orphan_pts_master allows one", unpaired, s)
		case orphan:
			unpaired = s
		case !shellJob:
			return fmt.Errorf("pid %d fd %d: %s: a terminal whose master is not dumped needs --shell-job", s.pid, s.fd, s.path)
		}
	}
	return nil
}

// queued takes the bytes waiting in each pty whose two sides are dumped:
// what the master would read (the slave's output) and what the slave
// would read (its input). Both are written back at once, so that the
// tree can go on if the dump fails or with --leave-running.
func (t *ttyDump) queued() ([]proto.Message, error) {
	var out []proto.Message
	for _, id := range t.order {
		m, s := t.sides[id], t.sides[id&^1]
		if ttyInfoSide(id) != ptyMaster || s == nil || m.hungUp || s.hungUp {
			continue
		}
		got, err := drainPair(m, s)
		if err != nil {
			return nil, err
		}
		out = append(out, got...)
	}
	return out, nil
}

// drainPair reads the queues of both sides of a pty, writes them back and
// returns them as tty-data entries.
func drainPair(m, s *dumpedSide) ([]proto.Message, error) {
	restore, err := nonblocking(m.copy, s.copy)
	if err != nil {
		return nil, fmt.Errorf("%v: %w", m, err)
	}
	defer restore()
	toMaster, err := drainTty(m.copy, m.info.GetPacketMode())
	if err != nil {
		return nil, fmt.Errorf("%v: read its queue: %w", m, err)
	}
	toSlave, err := drainTty(s.copy, false)
	if err != nil {
		return nil, fmt.Errorf("%v: read its queue: %w", s, err)
	}
	writeAll(s.copy, toMaster)
	writeAll(m.copy, toSlave)
	var out []proto.Message
	for _, q := range []struct {
		side *dumpedSide
		data []byte
	}{{m, toMaster}, {s, toSlave}} {
		if len(q.data) > 0 {
			out = append(out, &tty.TtyDataEntry{TtyId: proto.Uint32(q.side.info.GetId()), Data: q.data})
		}
	}
	return out, nil
}

// nonblocking sets O_NONBLOCK on the open files of fds (the task's own,
// frozen meanwhile) and returns what puts their flags back.
func nonblocking(fds ...int) (func(), error) {
	var undo []func()
	restore := func() {
		for _, u := range slices.Backward(undo) {
			u()
		}
	}
	for _, fd := range fds {
		fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
		if err != nil {
			restore()
			return nil, fmt.Errorf("F_GETFL: %w", err)
		}
		if fl&unix.O_NONBLOCK != 0 {
			continue
		}
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFL, fl|unix.O_NONBLOCK); err != nil {
			restore()
			return nil, fmt.Errorf("F_SETFL: %w", err)
		}
		undo = append(undo, func() { unix.FcntlInt(uintptr(fd), unix.F_SETFL, fl) })
	}
	return restore, nil
}

// drainTty reads what waits on non-blocking fd, up to ttyDataMax bytes.
// In packet mode every read starts with a status byte, dropped here.
func drainTty(fd int, packet bool) ([]byte, error) {
	var out []byte
	buf := make([]byte, 4096)
	status := 0
	if packet {
		status = 1
	}
	for len(out) < ttyDataMax {
		n, err := unix.Read(fd, buf[:min(len(buf), ttyDataMax-len(out)+status)])
		switch {
		case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EIO), err == nil && n == 0:
			return out, nil
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			return nil, err
		}
		out = append(out, buf[status:n]...)
	}
	return out, nil
}

// writeAll writes data to fd as far as it goes: a terminal never
// promised delivery, and the dump has what it needs.
func writeAll(fd int, data []byte) {
	for len(data) > 0 {
		n, err := unix.Write(fd, data)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || n <= 0 {
			return
		}
		data = data[n:]
	}
}

// close closes amber's copies.
func (t *ttyDump) close() {
	for _, s := range t.sides {
		unix.Close(s.copy)
	}
}
