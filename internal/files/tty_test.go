package files

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/regfile"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/tty"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/image"
	"amber/internal/plan"
)

func TestPtyOfRdev(t *testing.T) {
	for _, c := range []struct {
		major, minor uint32
		want         ptySide
		index        uint32
	}{
		{5, 2, ptyMaster, 0},
		{136, 0, ptySlave, 0},
		{136, 7, ptySlave, 7},
		{136, 300, ptySlave, 300},
		{137, 4, ptySlave, 260},
		{5, 0, notPty, 0}, // /dev/tty
		{5, 1, notPty, 0}, // /dev/console
		{4, 1, notPty, 0}, // tty1
		{1, 3, notPty, 0}, // /dev/null
	} {
		rdev := unix.Mkdev(c.major, c.minor)
		if got := ptyOfRdev(rdev); got != c.want {
			t.Errorf("%d:%d: %v, want %v", c.major, c.minor, got, c.want)
		}
		if c.want == ptySlave && slaveIndex(rdev) != c.index {
			t.Errorf("%d:%d: index %d, want %d", c.major, c.minor, slaveIndex(rdev), c.index)
		}
	}
}

// TestTtyInfoIDs: CRIU's ids, index<<1 for a slave, +1 for a master.
func TestTtyInfoIDs(t *testing.T) {
	for _, c := range []struct {
		index uint32
		side  ptySide
		id    uint32
	}{{0, ptySlave, 0}, {0, ptyMaster, 1}, {3, ptySlave, 6}, {3, ptyMaster, 7}} {
		if id := ttyInfoID(c.index, c.side); id != c.id || ttyInfoSide(id) != c.side {
			t.Errorf("pty %d %v: id %d (side %v), want %d", c.index, c.side, id, ttyInfoSide(id), c.id)
		}
	}
}

func TestTermiosRoundTrip(t *testing.T) {
	in := &unix.Termios{Iflag: 4, Oflag: 5, Cflag: 0xbd, Lflag: 0xa30, Line: 1, Ispeed: 9600, Ospeed: 9600}
	for i := range in.Cc {
		in.Cc[i] = uint8(i + 1)
	}
	out, err := termiosOf(termiosEntry(in))
	if err != nil || *out != *in {
		t.Errorf("round trip: %+v, %v; want %+v", out, err, in)
	}
	short := termiosEntry(in)
	short.CCc = short.CCc[:5]
	if _, err := termiosOf(short); err == nil || !strings.Contains(err.Error(), "5 control characters") {
		t.Errorf("short c_cc: %v, want an error naming the count", err)
	}
	ws := &unix.Winsize{Row: 33, Col: 77, Xpixel: 640, Ypixel: 480}
	if got := winsizeOf(winsizeEntry(ws)); *got != *ws {
		t.Errorf("winsize round trip: %+v", got)
	}
}

// livePty is a pty pair of the test process, in raw mode, 33x77.
type livePty struct {
	master, slave int
	index         uint32
}

func openLivePty(t *testing.T) *livePty {
	t.Helper()
	m, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Skipf("no pty here: %v", err)
	}
	index, err := unix.IoctlGetUint32(m, unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.IoctlSetPointerInt(m, unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	s, err := openPeer(m, unix.O_RDWR)
	if err != nil {
		t.Fatal(err)
	}
	p := &livePty{master: m, slave: s, index: index}
	t.Cleanup(func() { unix.Close(p.slave); unix.Close(p.master) })
	tm, err := unix.IoctlGetTermios(s, unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	tm.Lflag &^= unix.ICANON | unix.ECHO | unix.ISIG
	tm.Oflag &^= unix.OPOST
	tm.Cc[unix.VMIN], tm.Cc[unix.VTIME] = 3, 7
	if err := unix.IoctlSetTermios(s, unix.TCSETS, tm); err != nil {
		t.Fatal(err)
	}
	if err := unix.IoctlSetWinsize(s, unix.TIOCSWINSZ, &unix.Winsize{Row: 33, Col: 77}); err != nil {
		t.Fatal(err)
	}
	return p
}

// queue writes data into fd and waits until the other side has it.
func (p *livePty) queue(t *testing.T, fd int, data string) {
	t.Helper()
	other := p.master
	if fd == p.master {
		other = p.slave
	}
	if _, err := unix.Write(fd, []byte(data)); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if n, err := unix.IoctlGetInt(other, unix.TIOCINQ); err == nil && n >= len(data) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%q never arrived", data)
		}
	}
}

// readNow reads what waits on fd without blocking.
func readNow(t *testing.T, fd int) string {
	t.Helper()
	restore, err := nonblocking(fd)
	if err != nil {
		t.Fatal(err)
	}
	defer restore()
	got, err := drainTty(fd, false)
	if err != nil {
		t.Fatal(err)
	}
	return string(got)
}

// dumpLivePty dumps both sides of p as descriptors of the test process.
func dumpLivePty(t *testing.T, p *livePty, opts DumpOptions) (*Dumper, image.Dir) {
	t.Helper()
	d := NewDumper(NewTable(), opts)
	for _, fd := range []int{p.master, p.slave} {
		if _, _, err := addLiveTty(d, fd); err != nil {
			t.Fatal(err)
		}
	}
	dir := tempImages(t)
	return d, dir
}

func addLiveTty(d *Dumper, fd int) (uint32, fdinfo.FdTypes, error) {
	path := fmt.Sprintf("/proc/self/fd/%d", fd)
	st, err := os.Stat(path)
	if err != nil {
		return 0, 0, err
	}
	link, err := os.Readlink(path)
	if err != nil {
		return 0, 0, err
	}
	return d.addTty(os.Getpid(), fd, link, st, ptyOf(st), unix.O_RDWR)
}

// TestDumpLivePty dumps a pty pair of the test process: TTY files with
// REG entries of their paths, both sides in tty-info.img with their
// termios and window size, the queued bytes in tty-data.img, and the
// queues as they were afterwards.
func TestDumpLivePty(t *testing.T) {
	p := openLivePty(t)
	p.queue(t, p.master, "typed")
	p.queue(t, p.slave, "printed")
	d, dir := dumpLivePty(t, p, DumpOptions{})
	if err := d.ttys.finish(dir, DumpOptions{}, nil); err != nil {
		t.Fatal(err)
	}
	imgs, err := readTtyImages(dir)
	if err != nil {
		t.Fatal(err)
	}
	m, s := imgs.Infos[ttyInfoID(p.index, ptyMaster)], imgs.Infos[ttyInfoID(p.index, ptySlave)]
	if m == nil || s == nil || len(imgs.Infos) != 2 {
		t.Fatalf("infos %v, want pty %d's master and slave", imgs.Infos, p.index)
	}
	for _, e := range []*tty.TtyInfoEntry{m, s} {
		if e.GetTermios().GetCLflag()&unix.ICANON != 0 || e.GetTermios().GetCCc()[unix.VMIN] != 3 || e.GetWinsize().GetWsCol() != 77 {
			t.Errorf("info %d: termios %v winsize %v, want raw, VMIN 3, 77 columns", e.GetId(), e.GetTermios(), e.GetWinsize())
		}
		if e.GetPty().GetIndex() != p.index || e.GetSid() != 0 || e.GetLocked() {
			t.Errorf("info %d: %v, want index %d, no session, unlocked", e.GetId(), e, p.index)
		}
	}
	if got := string(imgs.Data[m.GetId()]); got != "printed" {
		t.Errorf("master's queue %q, want %q", got, "printed")
	}
	if got := string(imgs.Data[s.GetId()]); got != "typed" {
		t.Errorf("slave's queue %q, want %q", got, "typed")
	}
	if got := readNow(t, p.slave); got != "typed" {
		t.Errorf("slave reads %q after the dump, want %q back", got, "typed")
	}
	if got := readNow(t, p.master); got != "printed" {
		t.Errorf("master reads %q after the dump, want %q back", got, "printed")
	}
	checkTtyFiles(t, d.Table.Entries(), p.index)
}

// checkTtyFiles: a TTY file per side, each naming a REG entry of its
// path.
func checkTtyFiles(t *testing.T, entries []*fdinfo.FileEntry, index uint32) {
	t.Helper()
	byID := map[uint32]*fdinfo.FileEntry{}
	for _, e := range entries {
		byID[e.GetId()] = e
	}
	var paths []string
	for _, e := range entries {
		if e.GetType() != fdinfo.FdTypes_TTY {
			continue
		}
		reg := byID[e.GetTty().GetRegfId()].GetReg()
		if reg == nil || e.GetTty().GetId() != e.GetId() || e.GetTty().GetFlags() != unix.O_RDWR {
			t.Errorf("TTY file %v: want its id, O_RDWR and a REG entry", e)
			continue
		}
		paths = append(paths, reg.GetName())
	}
	slices.Sort(paths)
	if want := []string{"/dev/ptmx", fmt.Sprintf("/dev/pts/%d", index)}; !slices.Equal(paths, want) {
		t.Errorf("paths %q, want %q", paths, want)
	}
}

// TestDumpSlaveWithoutMaster: a live slave whose master is not dumped
// needs --shell-job, as a terminal always did.
func TestDumpSlaveWithoutMaster(t *testing.T) {
	p := openLivePty(t)
	d := NewDumper(NewTable(), DumpOptions{})
	if _, _, err := addLiveTty(d, p.slave); err != nil {
		t.Fatal(err)
	}
	err := d.ttys.finish(tempImages(t), DumpOptions{}, nil)
	for _, want := range []string{fmt.Sprintf("fd %d", p.slave), fmt.Sprintf("/dev/pts/%d", p.index), "--shell-job"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v, want one naming %q", err, want)
		}
	}
	d = NewDumper(NewTable(), DumpOptions{ShellJob: true})
	if _, _, err := addLiveTty(d, p.slave); err != nil {
		t.Fatal(err)
	}
	if err := d.ttys.finish(tempImages(t), DumpOptions{ShellJob: true}, nil); err != nil {
		t.Errorf("with --shell-job: %v", err)
	}
}

// TestDumpOrphanSlave: with orphan masters allowed (a container's
// terminal), one slave whose master is not dumped is recorded in
// tty-info.img with its termios; a second one is refused, naming both.
func TestDumpOrphanSlave(t *testing.T) {
	p, q := openLivePty(t), openLivePty(t)
	opts := DumpOptions{OrphanPtsMaster: true}
	d := NewDumper(NewTable(), opts)
	if _, _, err := addLiveTty(d, p.slave); err != nil {
		t.Fatal(err)
	}
	dir := tempImages(t)
	if err := d.ttys.finish(dir, opts, nil); err != nil {
		t.Fatal(err)
	}
	imgs, err := readTtyImages(dir)
	if err != nil {
		t.Fatal(err)
	}
	s := imgs.Infos[ttyInfoID(p.index, ptySlave)]
	if len(imgs.Infos) != 1 || s.GetWinsize().GetWsCol() != 77 || s.GetTermios().GetCCc()[unix.VMIN] != 3 {
		t.Errorf("infos %v, want pty %d's slave with 77 columns and VMIN 3", imgs.Infos, p.index)
	}
	d = NewDumper(NewTable(), opts)
	for _, fd := range []int{p.slave, q.slave} {
		if _, _, err := addLiveTty(d, fd); err != nil {
			t.Fatal(err)
		}
	}
	err = d.ttys.finish(tempImages(t), opts, nil)
	for _, want := range []string{fmt.Sprintf("/dev/pts/%d", p.index), fmt.Sprintf("/dev/pts/%d", q.index), "orphan_pts_master allows one"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("two orphan slaves: error %v, want one naming %q", err, want)
		}
	}
}

// TestRestoreLivePty dumps a pty pair of the test process and makes it
// again from the images: the new pty has the termios, window size and
// queued bytes; its index is the dumped one if free (here it is not: the
// original is still open), and a warning says otherwise.
func TestRestoreLivePty(t *testing.T) {
	p := openLivePty(t)
	p.queue(t, p.master, "typed")
	p.queue(t, p.slave, "printed")
	d, dir := dumpLivePty(t, p, DumpOptions{})
	if err := d.ttys.finish(dir, DumpOptions{}, nil); err != nil {
		t.Fatal(err)
	}
	imgs, err := readTtyImages(dir)
	if err != nil {
		t.Fatal(err)
	}
	idx := Index{}
	for _, e := range d.Table.Entries() {
		idx[e.GetId()] = e
	}
	terms, err := PrepareTerminals(TtyInput{Files: idx, Images: imgs})
	if err != nil {
		t.Fatal(err)
	}
	defer terms.Close()
	if err := terms.Open("/"); err != nil {
		t.Fatal(err)
	}
	m, s := restoredSides(t, terms, idx)
	index, err := unix.IoctlGetUint32(m, unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	if index == p.index || !slices.ContainsFunc(terms.Warnings, func(w string) bool {
		return strings.Contains(w, fmt.Sprintf("pty %d is taken", p.index)) && strings.Contains(w, fmt.Sprintf("/dev/pts/%d", index))
	}) {
		t.Errorf("restored as pty %d while pty %d is open; warnings %q", index, p.index, terms.Warnings)
	}
	tm, err := unix.IoctlGetTermios(s, unix.TCGETS)
	if err != nil || tm.Lflag&unix.ICANON != 0 || tm.Cc[unix.VMIN] != 3 || tm.Cc[unix.VTIME] != 7 {
		t.Errorf("termios %+v, %v; want raw, VMIN 3, VTIME 7", tm, err)
	}
	if ws, err := unix.IoctlGetWinsize(m, unix.TIOCGWINSZ); err != nil || ws.Row != 33 || ws.Col != 77 {
		t.Errorf("window %+v, %v; want 33x77", ws, err)
	}
	waitInq(t, s, len("typed"))
	waitInq(t, m, len("printed"))
	if got := readNow(t, s); got != "typed" {
		t.Errorf("restored slave reads %q, want %q", got, "typed")
	}
	if got := readNow(t, m); got != "printed" {
		t.Errorf("restored master reads %q, want %q", got, "printed")
	}
}

// restoredSides are amber's descriptors of the master and slave files.
func restoredSides(t *testing.T, terms *Terminals, idx Index) (m, s int) {
	t.Helper()
	m, s = -1, -1
	for id, f := range terms.Fds {
		switch ttyInfoSide(idx[id].GetTty().GetTtyInfoId()) {
		case ptyMaster:
			m = f.Fd
		case ptySlave:
			s = f.Fd
		}
	}
	if m < 0 || s < 0 {
		t.Fatalf("descriptors %v: want a master and a slave", terms.Fds)
	}
	return m, s
}

func waitInq(t *testing.T, fd, n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if got, err := unix.IoctlGetInt(fd, unix.TIOCINQ); err == nil && got >= n {
			return
		}
	}
	t.Errorf("fd %d: %d bytes never arrived", fd, n)
}

// ttyImages builds the images of terminals: TTY files (and their REG
// entries) and tty-info entries.
type ttyImages struct {
	idx  Index
	imgs *TtyImages
}

func newTtyImages() *ttyImages {
	return &ttyImages{idx: Index{}, imgs: &TtyImages{Infos: map[uint32]*tty.TtyInfoEntry{}, Data: map[uint32][]byte{}}}
}

// side records side of pty index (hung: no termios), controlling
// session sid with foreground pgrp, and adds a file of it.
func (ti *ttyImages) side(index uint32, side ptySide, sid, pgrp uint32, hung bool) uint32 {
	id := ttyInfoID(index, side)
	e := &tty.TtyInfoEntry{
		Id: proto.Uint32(id), Type: tty.TtyType_PTY.Enum(), Locked: proto.Bool(false), Exclusive: proto.Bool(false),
		PacketMode: proto.Bool(false), Sid: proto.Uint32(sid), Pgrp: proto.Uint32(pgrp), Rdev: proto.Uint32(0),
		Pty: &tty.TtyPtyEntry{Index: proto.Uint32(index)},
	}
	if !hung {
		e.Termios = termiosEntry(&unix.Termios{Lflag: unix.ICANON})
		e.TermiosLocked = termiosEntry(&unix.Termios{})
		e.Winsize = winsizeEntry(&unix.Winsize{Row: 24, Col: 80})
	}
	ti.imgs.Infos[id] = e
	return ti.file(id, side)
}

// file adds a TTY file of info id.
func (ti *ttyImages) file(infoID uint32, side ptySide) uint32 {
	path := "/dev/ptmx"
	if side == ptySlave {
		path = fmt.Sprintf("/dev/pts/%d", infoID>>1)
	}
	reg := uint32(len(ti.idx) + 1)
	ti.idx[reg] = &fdinfo.FileEntry{Type: fdinfo.FdTypes_REG.Enum(), Id: proto.Uint32(reg), Reg: &regfile.RegFileEntry{
		Id: proto.Uint32(reg), Flags: proto.Uint32(unix.O_RDWR), Pos: proto.Uint64(0), Fown: newFown(), Name: proto.String(path),
	}}
	id := reg + 1
	ti.idx[id] = &fdinfo.FileEntry{Type: fdinfo.FdTypes_TTY.Enum(), Id: proto.Uint32(id), Tty: &tty.TtyFileEntry{
		Id: proto.Uint32(id), TtyInfoId: proto.Uint32(infoID), Flags: proto.Uint32(unix.O_RDWR), Fown: newFown(), RegfId: proto.Uint32(reg),
	}}
	return id
}

// describe lists groups as "pty N: masters/slaves [inherit]".
func describeGroups(groups []*ttyGroup) []string {
	var out []string
	for _, g := range groups {
		s := fmt.Sprintf("%v: %d/%d", g, len(g.masters), len(g.slaves))
		if g.inherit {
			s += " inherit"
		}
		out = append(out, s)
	}
	return out
}

func TestTtyGroups(t *testing.T) {
	for _, c := range []struct {
		name     string
		build    func(ti *ttyImages)
		shellJob bool
		want     []string
		err      []string
	}{
		{"pair", func(ti *ttyImages) {
			ti.side(3, ptyMaster, 0, 0, false)
			ti.side(3, ptySlave, 0, 0, false)
		}, false, []string{"pty 3: 1/1"}, nil},
		{"slave opened twice", func(ti *ttyImages) {
			ti.side(3, ptyMaster, 0, 0, false)
			ti.side(3, ptySlave, 0, 0, false)
			ti.file(6, ptySlave)
		}, false, []string{"pty 3: 1/2"}, nil},
		{"master only, two ptys", func(ti *ttyImages) {
			ti.side(5, ptyMaster, 0, 0, false)
			ti.side(1, ptyMaster, 0, 0, false)
		}, false, []string{"pty 1: 1/0", "pty 5: 1/0"}, nil},
		{"hung-up slave", func(ti *ttyImages) { ti.side(2, ptySlave, 0, 0, true) }, false, []string{"pty 2: 0/1"}, nil},
		{"shell job's terminal", func(ti *ttyImages) { ti.side(0, ptySlave, 100, 100, false) }, true,
			[]string{"amber's terminal: 0/1 inherit"}, nil},
		{"terminal of a job without --shell-job", func(ti *ttyImages) { ti.side(4, ptySlave, 100, 100, false) }, false,
			nil, []string{"file id 2", "/dev/pts/4", "--shell-job"}},
		{"no tty-info entry", func(ti *ttyImages) { ti.file(9, ptyMaster) }, false, nil, []string{"file id 2", "tty-info.img", "0x9"}},
		{"two masters of one pty", func(ti *ttyImages) {
			ti.side(3, ptyMaster, 0, 0, false)
			ti.file(7, ptyMaster)
		}, false, nil, []string{"pty 3", "2 master files"}},
		{"master without termios", func(ti *ttyImages) { ti.side(3, ptyMaster, 0, 0, true) }, false, nil, []string{"pty 3", "termios"}},
		{"a console", func(ti *ttyImages) {
			id := ti.side(0, ptySlave, 0, 0, false)
			ti.imgs.Infos[ti.idx[id].GetTty().GetTtyInfoId()].Type = tty.TtyType_CONSOLE.Enum()
			ti.imgs.Infos[ti.idx[id].GetTty().GetTtyInfoId()].Pty = nil
		}, false, nil, []string{"CONSOLE", "--shell-job"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			ti := newTtyImages()
			c.build(ti)
			groups, err := ttyGroups(ti.idx, ti.imgs, c.shellJob, false)
			for _, want := range c.err {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("error %v, want one naming %q", err, want)
				}
			}
			if c.err == nil && err != nil {
				t.Fatal(err)
			}
			if got := describeGroups(groups); c.err == nil && !slices.Equal(got, c.want) {
				t.Errorf("groups %q, want %q", got, c.want)
			}
		})
	}
}

func TestChooseCttys(t *testing.T) {
	tree := []TtyProc{{Pid: 100, Sid: 100, Pgid: 100}, {Pid: 101, Sid: 100, Pgid: 101}, {Pid: 200, Sid: 1, Pgid: 1}}
	for _, c := range []struct {
		name      string
		sid, pgrp uint32
		inherit   bool
		want      string // "leader/pgrp", or "" for none
		warning   string
	}{
		{"leader in the foreground", 100, 100, false, "100/0", ""},
		{"another group in the foreground", 100, 101, false, "100/101", ""},
		{"nobody's terminal", 0, 0, false, "", ""},
		{"leader not restored", 300, 300, false, "", "session 300"},
		{"leader not a leader", 101, 101, false, "", "session 101"},
		{"foreground group not restored", 100, 555, false, "100/0", "process group 555"},
		{"foreground group of another session", 100, 1, false, "100/0", "process group 1"},
		{"shell job leading its session", 100, 100, true, "100/0", ""},
		{"shell job in the shell's session", 42, 42, true, "", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			ti := newTtyImages()
			if c.inherit {
				ti.side(0, ptySlave, c.sid, c.pgrp, false)
			} else {
				ti.side(0, ptyMaster, c.sid, c.pgrp, false)
			}
			groups, err := ttyGroups(ti.idx, ti.imgs, true, false)
			if err != nil {
				t.Fatal(err)
			}
			choices, warnings := chooseCttys(groups, tree)
			var got string
			if len(choices) == 1 {
				got = fmt.Sprintf("%d/%d", choices[0].leader, choices[0].pgrp)
			}
			if got != c.want || len(choices) > 1 {
				t.Errorf("choices %v, want %q", choices, c.want)
			}
			if (c.warning == "") != (len(warnings) == 0) || (c.warning != "" && !strings.Contains(warnings[0], c.warning)) {
				t.Errorf("warnings %q, want one naming %q", warnings, c.warning)
			}
		})
	}
}

// amberTerminals puts amber's descriptors of TTY files in the simulated
// amber.
func amberTerminals(s *fdSim, files map[uint32]TtyFd) {
	for _, f := range files {
		if _, ok := s.others[amberPid][f.Fd]; !ok {
			s.others[amberPid][f.Fd] = &simFile{kind: "amber", origin: f.Fd}
		}
	}
}

// TestPlanFdsTerminals: TTY files are taken from amber's descriptors;
// two descriptors of one file share one open file; amber's own terminal
// serves a --shell-job.
func TestPlanFdsTerminals(t *testing.T) {
	l := newLayout()
	ti := newTtyImages()
	master := ti.side(3, ptyMaster, 0, 0, false)
	slave := ti.side(3, ptySlave, 0, 0, false)
	job := ti.side(0, ptySlave, 7, 7, false)
	for id, e := range ti.idx {
		l.in.Files[id] = e
	}
	l.fd(0, job, false).fd(1, job, false).fd(2, job, false).fd(5, master, true).fd(6, slave, false).fd(9, slave, true)
	files := map[uint32]TtyFd{master: {Fd: 10, What: "pty 3 master", Master: true}, slave: {Fd: 11, What: "pty 3 slave"}, job: {Fd: 0, What: "amber's terminal"}}
	l.in.Ttys = files
	p, err := planFds(l)
	if err != nil {
		t.Fatal(err)
	}
	s := newFdSim(junk(0, 1, 4))
	amberTerminals(s, files)
	if err := s.run(p.prog); err != nil {
		t.Fatalf("%v\nplan:\n%s", err, p.prog)
	}
	for fd, want := range map[int]int{0: 0, 1: 0, 2: 0, 5: 10, 6: 11, 9: 11} {
		d, ok := s.fds[fd]
		if !ok || d.f.kind != "amber" || d.f.origin != want {
			t.Errorf("fd %d: %v, want amber's fd %d\n%s", fd, d.f, want, s.dump())
		}
	}
	if s.fds[6].f != s.fds[9].f || s.fds[5].cloexec != true || s.fds[6].cloexec || !s.fds[9].cloexec || s.fds[0].cloexec {
		t.Errorf("table:\n%s want fds 6 and 9 one file, cloexec on 5 and 9 only", s.dump())
	}
	if len(s.fds) != 6 {
		t.Errorf("%d descriptors left, want 6:\n%s", len(s.fds), s.dump())
	}
}

// TestPlanFdsTerminalNotMade: a TTY file amber has no terminal for is
// refused, naming it.
func TestPlanFdsTerminalNotMade(t *testing.T) {
	l := newLayout()
	ti := newTtyImages()
	id := ti.side(3, ptySlave, 0, 0, false)
	for i, e := range ti.idx {
		l.in.Files[i] = e
	}
	l.fd(0, id, false)
	_, err := planFds(l)
	for _, want := range []string{"fd 0", fmt.Sprint("file id ", id), "/dev/pts/3"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v, want one naming %q", err, want)
		}
	}
}

// TestPlanCttyAndForeground: a session leader takes amber's terminal as
// controlling terminal and closes the copy; later it gives the
// foreground to the dumped group through /dev/tty.
func TestPlanCttyAndForeground(t *testing.T) {
	b := plan.NewBuilder(testBase, 0)
	b.Inherit([]int{0, 1, 2})
	c := Ctty{Fd: 11, What: "pty 3", Pgrp: 4321}
	PlanCtty(b, amberPid, c)
	mid := b.Len()
	PlanForeground(b, c)
	PlanForeground(b, Ctty{Fd: 11, What: "pty 3"}) // the leader's own group: nothing to do
	prog := b.Finish()
	s := newFdSim(junk(0, 1, 2))
	s.others[amberPid][11] = &simFile{kind: "amber", origin: 11}
	if err := s.runCalls(prog, 0, mid); err != nil {
		t.Fatalf("%v\nplan:\n%s", err, prog)
	}
	if s.tty.ctty == nil || s.tty.ctty.origin != 11 || len(s.fds) != 3 {
		t.Fatalf("controlling terminal %v, table:\n%s want amber's fd 11 and fds 0-2 only", s.tty.ctty, s.dump())
	}
	if err := s.runCalls(prog, mid, len(prog.Calls)); err != nil {
		t.Fatalf("%v\nplan:\n%s", err, prog)
	}
	if s.tty.fg != 4321 || len(s.fds) != 3 || s.opened["/dev/tty"] != 1 {
		t.Errorf("foreground %d, /dev/tty opened %d times, table:\n%s want 4321, once, fds 0-2", s.tty.fg, s.opened["/dev/tty"], s.dump())
	}
}

// TestPlanForegroundWithoutCtty: the simulator refuses TIOCSPGRP before
// TIOCSCTTY, as the kernel does: PlanForeground relies on PlanCtty.
func TestPlanForegroundWithoutCtty(t *testing.T) {
	b := plan.NewBuilder(testBase, 0)
	PlanForeground(b, Ctty{What: "pty 3", Pgrp: 9})
	prog := b.Finish()
	if err := newFdSim(nil).run(prog); err == nil || !strings.Contains(err.Error(), "ENOTTY") && !strings.Contains(err.Error(), "inappropriate ioctl") {
		t.Errorf("TIOCSPGRP without a controlling terminal: %v, want ENOTTY", err)
	}
}

// TestRestoreOrphanPty dumps the slave of a pty whose master is not in
// the dump and makes it again: nothing before OpenOrphan, then a new pty
// with the dumped termios and window size whose master goes to Give,
// connected to the slave the tasks take.
func TestRestoreOrphanPty(t *testing.T) {
	p := openLivePty(t)
	opts := DumpOptions{OrphanPtsMaster: true}
	d := NewDumper(NewTable(), opts)
	if _, _, err := addLiveTty(d, p.slave); err != nil {
		t.Fatal(err)
	}
	dir := tempImages(t)
	if err := d.ttys.finish(dir, opts, nil); err != nil {
		t.Fatal(err)
	}
	imgs, err := readTtyImages(dir)
	if err != nil {
		t.Fatal(err)
	}
	idx := Index{}
	for _, e := range d.Table.Entries() {
		idx[e.GetId()] = e
	}
	if _, err := PrepareTerminals(TtyInput{Files: idx, Images: imgs}); err == nil || !strings.Contains(err.Error(), "--shell-job") {
		t.Errorf("without OrphanPts: %v, want an error asking for --shell-job", err)
	}
	terms, err := PrepareTerminals(TtyInput{Files: idx, Images: imgs, OrphanPts: true})
	if err != nil {
		t.Fatal(err)
	}
	defer terms.Close()
	if err := terms.Open("/"); err != nil {
		t.Fatal(err)
	}
	if len(terms.Fds) != 0 {
		t.Fatalf("descriptors %v before OpenOrphan", terms.Fds)
	}
	if err := terms.OpenOrphan(OrphanInput{Root: "/"}); err == nil {
		t.Error("OpenOrphan without Give: no error")
	}
	given := -1
	if err := terms.OpenOrphan(OrphanInput{Root: "/", Give: func(m int) error { given = m; return nil }}); err != nil {
		t.Fatal(err)
	}
	if len(terms.Fds) != 1 || given < 0 {
		t.Fatalf("descriptors %v, master %d: want one slave and a master given", terms.Fds, given)
	}
	var s TtyFd
	for _, f := range terms.Fds {
		s = f
	}
	if ws, err := unix.IoctlGetWinsize(given, unix.TIOCGWINSZ); err != nil || ws.Col != 77 {
		t.Errorf("window %+v, %v; want 77 columns", ws, err)
	}
	if _, err := unix.Write(given, []byte("abc")); err != nil {
		t.Fatal(err)
	}
	waitInq(t, s.Fd, 3)
	if got := readNow(t, s.Fd); got != "abc" {
		t.Errorf("slave reads %q from the master given, want %q", got, "abc")
	}
}

// TestPlanFdsTerminalsHidden: in a new pid namespace, where amber has no
// PID, the root takes every terminal file of the tree through the pidfd
// of amber it starts with (never by amber's PID), places its own and
// keeps the others parked; another task takes its file from the root,
// and without a holder is refused, naming the file.
func TestPlanFdsTerminalsHidden(t *testing.T) {
	l := newLayout()
	ti := newTtyImages()
	master := ti.side(3, ptyMaster, 0, 0, false)
	slave := ti.side(3, ptySlave, 0, 0, false)
	other := ti.side(4, ptySlave, 0, 0, false) // another task's: a hung-up pty's slave
	for id, e := range ti.idx {
		l.in.Files[id] = e
	}
	l.fd(0, slave, false).fd(1, slave, false).fd(5, master, true)
	l.in.Ttys = map[uint32]TtyFd{master: {Fd: 10, What: "pty 3 master", Master: true}, slave: {Fd: 11, What: "pty 3 slave"}, other: {Fd: 12, What: "pty 4 slave"}}
	l.in.AmberHidden, l.in.AmberPidfd = true, 3
	b := plan.NewBuilder(testBase, 0)
	b.CloseAllBut(3)
	r, err := PlanFds(b, l.in)
	if err != nil {
		t.Fatal(err)
	}
	ClosePlan(b, r)
	prog := b.Finish()
	if text := prog.String(); strings.Contains(text, "pidfd_open") || strings.Contains(text, "/proc/") {
		t.Errorf("the root names amber by PID or path:\n%s", text)
	}
	s := newFdSim(map[int]*simFile{3: {kind: "pidfd", origin: amberPid}})
	amberTerminals(s, l.in.Ttys)
	held, ok := r.Held[other]
	if !ok || r.Parked[held] != other {
		t.Fatalf("held %v, parked %v: want pty 4's slave parked for the tree", r.Held, r.Parked)
	}
	closing := len(prog.Calls) - len(r.Parked)
	if err := s.runCalls(prog, 0, closing); err != nil {
		t.Fatalf("%v\nplan:\n%s", err, prog)
	}
	for fd, want := range map[int]int{0: 11, 1: 11, 5: 10, held: 12} {
		if d, ok := s.fds[fd]; !ok || d.f.kind != "amber" || d.f.origin != want {
			t.Errorf("fd %d: %v, want amber's fd %d\n%s", fd, d.f, want, s.dump())
		}
	}
	for fd, id := range r.Parked {
		if d, ok := s.fds[fd]; !ok || d.f.origin != l.in.Ttys[id].Fd {
			t.Errorf("parked fd %d: %v, want amber's file of file id %d\n%s", fd, d.f, id, s.dump())
		}
	}
	if len(s.fds) != 3+len(r.Parked) {
		t.Errorf("%d descriptors, want 0, 1, 5 and the parked files (no pidfd left):\n%s", len(s.fds), s.dump())
	}
	if err := s.runCalls(prog, closing, len(prog.Calls)); err != nil || len(s.fds) != 3 {
		t.Errorf("closing the parked files: %v\n%s", err, s.dump())
	}

	// Another task of the tree: pty 4's slave comes from the root, by
	// the root's PID in the namespace.
	c := newLayout()
	c.in.Files, c.in.Ttys, c.in.AmberHidden = l.in.Files, l.in.Ttys, true
	c.fd(0, other, false)
	const rootPid = 1
	c.in.Shared = func(id uint32) (Holder, bool) { return Holder{Pid: rootPid, Fd: held}, id == other }
	p, err := planFds(c)
	if err != nil {
		t.Fatal(err)
	}
	cs := newFdSim(nil)
	cs.others[rootPid] = map[int]*simFile{held: s.others[amberPid][12]}
	if err := cs.run(p.prog); err != nil {
		t.Fatalf("%v\nplan:\n%s", err, p.prog)
	}
	if d, ok := cs.fds[0]; !ok || d.f.origin != 12 || len(cs.fds) != 1 {
		t.Errorf("child's table:\n%s want amber's fd 12 at 0 alone", cs.dump())
	}
	c.in.Shared = nil
	if _, err := planFds(c); err == nil || !strings.Contains(err.Error(), "pty 4 slave") || !strings.Contains(err.Error(), fmt.Sprint("file id ", other)) {
		t.Errorf("no holder and no pidfd of amber: %v, want an error naming pty 4's slave", err)
	}
}
