package restore

import (
	"bytes"
	"encoding/binary"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/pstree"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/vma"
	"golang.org/x/sys/unix"

	"amber/internal/compel"
	"amber/internal/cpu"
	"amber/internal/creds"
	"amber/internal/image"
	"amber/internal/mem"
	"amber/internal/plan"
	"amber/internal/proc"
)

// The images in testdata/criu-4.2 were written by CRIU 4.2 on kernel 6.18
// (whose vdso block is [vvar] 4 pages, [vvar_vclock] 2, [vdso] 2, as
// stub() has it) of four programs of test/zdtm/static, each dumped
// while it waited for SIGTERM: file_offset (one process, regular files),
// sk_unix_tree (a parent and a child sharing unix sockets and a pipe),
// threads_tls (nine threads) and zombie (two zombie children). The tests plan their restore as amber
// would, without a process.

// criuFixture loads the images of a fixture. The pages images are left
// out of the repository: they are made here, sparse, of the size the
// pagemaps say, which is all planning looks at.
func criuFixture(t *testing.T, name string) *treeImages {
	t.Helper()
	src := filepath.Join("testdata", "criu-4.2", name)
	tmp := t.TempDir()
	if err := os.CopyFS(tmp, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	dir, err := image.OpenDir(tmp)
	if err != nil {
		t.Fatal(err)
	}
	pagemaps, err := filepath.Glob(filepath.Join(tmp, "pagemap-*.img"))
	if err != nil || len(pagemaps) == 0 {
		t.Fatalf("%s: no pagemap images (%v)", src, err)
	}
	for _, pm := range pagemaps {
		head, entries, err := mem.ReadPagemap(dir.File(filepath.Base(pm)))
		if err != nil {
			t.Fatal(err)
		}
		var pages int64
		for _, e := range entries {
			if e.GetFlags()&mem.PEPresent != 0 {
				pages += int64(mem.NrPages(e))
			}
		}
		f, err := os.Create(filepath.Join(tmp, dir.PagesPath(head.GetPagesId()).Name()))
		if err != nil {
			t.Fatal(err)
		}
		err = f.Truncate(pages * page)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	tree, err := load(dir, false, false)
	if err != nil {
		t.Fatalf("load %s: %v", name, err)
	}
	return tree
}

// fixtureHost is a host whose files are those of the images, as they
// were at the dump.
func fixtureHost(tree *treeImages) *host {
	files := fakeFS{}
	for _, e := range tree.root.files {
		if r := e.GetReg(); r != nil {
			size := int64(r.GetSize())
			if fs.FileMode(r.GetMode())&fs.ModeDir != 0 || r.GetMode()&unix.S_IFMT == unix.S_IFDIR {
				size = -1
			}
			files[r.GetName()] = size
		}
	}
	return &host{limits: hostLimits(), amberPid: 999, stat: files.stat, workers: 1,
		creds: creds.Creds{CapPrm: amberCaps, CapEff: amberCaps, CapBnd: amberCaps}}
}

// imageVdso is where the image has its [vdso] and vvar VMAs.
func imageVdso(t *testing.T, tk *taskImages) (code, data *vma.VmaEntry) {
	t.Helper()
	for _, v := range tk.mm.GetVmas() {
		switch {
		case v.GetStatus()&mem.StatusVdso != 0:
			code = v
		case v.GetStatus()&mem.StatusVvar != 0:
			data = v
		}
	}
	if code == nil || data == nil {
		t.Fatalf("pid %d: image without [vdso] or vvar", tk.pid)
	}
	return code, data
}

// cString reads the NUL-terminated string the program holds at addr.
func cString(p *plan.Program, addr uint64) string {
	if addr < p.Base || addr >= p.Base+uint64(len(p.Image)) {
		return ""
	}
	b := p.Image[addr-p.Base:]
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// lastMask is the signal mask the last rt_sigprocmask of calls sets.
func lastMask(t *testing.T, p *plan.Program, calls []plan.Call) uint64 {
	t.Helper()
	for i := len(calls) - 1; i >= 0; i-- {
		if c := calls[i]; c.Nr == unix.SYS_RT_SIGPROCMASK && c.Args[0] == unix.SIG_SETMASK {
			return binary.LittleEndian.Uint64(p.Image[c.Args[1]-p.Base:])
		}
	}
	t.Fatal("no rt_sigprocmask(SIG_SETMASK)")
	return 0
}

// CRIU 4.2 records this kernel's [vvar] and [vvar_vclock] as one vvar
// VMA, saves the [vdso] pages and records [vsyscall]: the plan moves this
// kernel's three pieces where the image's two were, maps nothing of the
// rest, and leaves the process blocking SIGTERM as it was (CRIU writes
// the leader's mask in tc only), with its files open at their offsets.
func TestCriuFixtureSingleProcess(t *testing.T) {
	tree := criuFixture(t, "file_offset")
	if len(tree.tasks) != 1 || len(tree.root.threads) != 1 {
		t.Fatalf("%d tasks, %d threads; want 1 and 1", len(tree.tasks), len(tree.root.threads))
	}
	root := tree.root
	p, err := planTask(root, fixtureHost(tree), &origin{current: stub()})
	if err != nil {
		t.Fatal(err)
	}
	prog := p.prog
	code, data := imageVdso(t, root)
	if got := data.GetEnd() - data.GetStart(); got != 6*page {
		t.Fatalf("image vvar is %d bytes; want CRIU's merged 6 pages", got)
	}
	var moves [][2]uint64 // from the parked block, by offset, to where
	for _, c := range prog.Calls {
		switch {
		case c.Nr == unix.SYS_MREMAP && c.Args[0] >= prog.Park && c.Args[0] < prog.Park+8*page:
			moves = append(moves, [2]uint64{c.Args[0] - prog.Park, c.Args[4]})
		case c.Nr == unix.SYS_MMAP && c.Args[0] >= mem.TaskSize:
			t.Errorf("maps %#x, above user space: %s", c.Args[0], c.What)
		}
	}
	want := [][2]uint64{
		{0, data.GetStart()},                 // [vvar]
		{4 * page, data.GetStart() + 4*page}, // [vvar_vclock]
		{6 * page, code.GetStart()},          // [vdso]
	}
	if !slices.Equal(moves, want) {
		t.Errorf("vdso moves (offset in block, to) %#x; want %#x", moves, want)
	}
	if m := lastMask(t, prog, section(t, prog, threadSection(root.pid))); m != 1<<(unix.SIGTERM-1) {
		t.Errorf("mask %#x; want SIGTERM's %#x", m, 1<<(unix.SIGTERM-1))
	}
	opened := map[string]uint64{}
	var seeks []uint64
	for _, c := range prog.Calls {
		switch c.Nr {
		case unix.SYS_OPENAT:
			opened[filepath.Base(cString(prog, c.Args[1]))] = c.Args[2] &^ unix.O_CLOEXEC
		case unix.SYS_LSEEK:
			seeks = append(seeks, c.Args[1])
		}
	}
	if f, ok := opened["file_offset.data"]; !ok || f&unix.O_ACCMODE != unix.O_RDWR {
		t.Errorf("file_offset.data opened with %#x (%v); want O_RDWR", f, ok)
	}
	if f, ok := opened["file_offset.append"]; !ok || f&(unix.O_ACCMODE|unix.O_APPEND) != unix.O_WRONLY|unix.O_APPEND {
		t.Errorf("file_offset.append opened with %#x (%v); want O_WRONLY|O_APPEND", f, ok)
	}
	if !slices.Contains(seeks, 12345) {
		t.Errorf("seeks to %v; want file_offset.data's offset 12345", seeks)
	}
	for _, fd := range root.fds {
		if _, ok := p.fds.Held[fd.GetId()]; !ok {
			t.Errorf("fd %d (file id %d) not restored", fd.GetFd(), fd.GetId())
		}
	}
	// Dumped in rt_sigsuspend: CRIU's image has the call restarted
	// already; released from it, the thread enters it again.
	regs := releasedRegs(t, root.threads[0])
	if regs.Rax != unix.SYS_RT_SIGSUSPEND || int64(regs.Orig_rax) != -1 {
		t.Errorf("released with rax %#x orig_rax %#x; want rt_sigsuspend entered again", regs.Rax, regs.Orig_rax)
	}
}

// releasedRegs are the registers amber releases a thread with
// (loadRegisters).
func releasedRegs(t *testing.T, th threadImages) compel.Regs {
	t.Helper()
	regs, err := cpu.GPRegsFromImage(th.core.GetThreadInfo().GetGpregs())
	if err != nil {
		t.Fatal(err)
	}
	if regs, err = compel.KernelRegs(regs, th.restart); err != nil {
		t.Fatal(err)
	}
	compel.ReleaseRegs(&regs)
	return regs
}

// A parent and its child: the child, forked from its restored parent,
// finds this kernel's vdso block already where CRIU's image has it and
// leaves it; each restores its own descriptors, unix sockets and pipe
// ends among them.
func TestCriuFixtureTree(t *testing.T) {
	tree := criuFixture(t, "sk_unix_tree")
	if len(tree.tasks) != 2 || len(tree.root.children) != 1 {
		t.Fatalf("%d tasks, root has %d children; want 2 and 1", len(tree.tasks), len(tree.root.children))
	}
	h := fixtureHost(tree)
	parent, err := planTask(tree.root, h, &origin{current: stub()})
	if err != nil {
		t.Fatal(err)
	}
	child := tree.root.children[0]
	code, data := imageVdso(t, tree.root)
	var cur []proc.VMA
	for _, v := range tree.root.mm.GetVmas() {
		if v.GetStatus()&(mem.StatusVdso|mem.StatusVvar) == 0 {
			cur = append(cur, proc.VMA{Start: v.GetStart(), End: v.GetEnd(), Prot: int(v.GetProt())})
		}
	}
	kernel := vdsoBlock(data.GetStart())
	if kernel[2].Start != code.GetStart() {
		t.Fatalf("image [vdso] at %#x, not after its 6-page vvar", code.GetStart())
	}
	cur = append(cur, kernel...)
	cur = append(cur, proc.VMA{Start: parent.prog.Base, End: parent.prog.Base + parent.prog.Size, Prot: unix.PROT_READ | unix.PROT_WRITE | unix.PROT_EXEC})
	slices.SortFunc(cur, func(a, b proc.VMA) int { return int(int64(a.Start>>12) - int64(b.Start>>12)) })
	p, err := planTask(child, h, &origin{current: cur, parent: parent})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range section(t, p.prog, sectionMain) {
		if c.Nr == unix.SYS_MREMAP {
			t.Errorf("child moves the vdso block it has in place: %s", c.What)
		}
	}
	kinds := map[fdinfo.FdTypes]int{}
	for _, pl := range []*planned{parent, p} {
		for _, fd := range pl.t.fds {
			kinds[fd.GetType()]++
			if _, ok := pl.fds.Held[fd.GetId()]; !ok {
				t.Errorf("pid %d: fd %d (file id %d) not restored", pl.t.pid, fd.GetFd(), fd.GetId())
			}
		}
	}
	if kinds[fdinfo.FdTypes_UNIXSK] == 0 {
		t.Errorf("descriptors by kind %v; want unix sockets", kinds)
	}
}

// Nine threads: each gets its section, its own mask, and is released
// with no kernel restart code in rax (CRIU's images hold calls to
// restart already restarted, or failing with EINTR).
func TestCriuFixtureThreads(t *testing.T) {
	tree := criuFixture(t, "threads_tls")
	root := tree.root
	if len(root.threads) != 9 {
		t.Fatalf("%d threads; want 9", len(root.threads))
	}
	p, err := planTask(root, fixtureHost(tree), &origin{current: stub()})
	if err != nil {
		t.Fatal(err)
	}
	for _, th := range root.threads {
		calls := section(t, p.prog, threadSection(th.tid))
		if m, want := lastMask(t, p.prog, calls), th.core.GetThreadCore().GetBlkSigset(); m != want {
			t.Errorf("thread %d: mask %#x; want %#x", th.tid, m, want)
		}
		regs := releasedRegs(t, th)
		if e := -int64(regs.Rax); e >= 512 && e <= 516 {
			t.Errorf("thread %d released with restart code %d in rax", th.tid, e)
		}
	}
}

// Two zombie children: CRIU 4.2 writes each one's thread list with an
// uninitialized TID; the core image core-PID says it is dead, and how.
func TestCriuFixtureZombies(t *testing.T) {
	tree := criuFixture(t, "zombie")
	if len(tree.tasks) != 3 {
		t.Fatalf("%d tasks; want 3", len(tree.tasks))
	}
	var codes []uint32
	for _, tk := range tree.root.children {
		if !tk.zombie() {
			t.Errorf("pid %d is not a zombie", tk.pid)
		}
		codes = append(codes, tk.core.GetTc().GetExitCode())
	}
	if want := []uint32{42 << 8, uint32(unix.SIGKILL)}; !slices.Equal(codes, want) {
		t.Errorf("exit codes %#x; want %#x", codes, want)
	}
	if _, err := planTask(tree.root, fixtureHost(tree), &origin{current: stub()}); err != nil {
		t.Fatal(err)
	}
}

// Threads that do not start with the leader are refused but for a zombie.
func TestCriuFixtureOddThreadsOfALiveTask(t *testing.T) {
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(filepath.Join("testdata", "criu-4.2", "zombie"))); err != nil {
		t.Fatal(err)
	}
	d, err := image.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	entries, err := image.ReadFile(d.PstreePath(), image.Pstree, newOf[pstree.PstreeEntry]())
	if err != nil {
		t.Fatal(err)
	}
	entries[0].Threads = []uint32{entries[0].GetPid() + 1000}
	lt, err := linkTree("pstree.img", entries)
	if err != nil {
		t.Fatal(err)
	}
	err = lt.root.load(d, nil)
	if err == nil || !strings.Contains(err.Error(), "threads must start with the leader") {
		t.Errorf("load: %v; want the threads refused", err)
	}
}
