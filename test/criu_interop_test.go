package test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	criucore "github.com/checkpoint-restore/go-criu/v8/crit/images/criu-core"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/inventory"
	"golang.org/x/sys/unix"

	"amber/internal/image"
	"amber/internal/mem"
)

// interopPrograms are the programs that CRIU and amber each restore from
// the other's dump: one of each kind of state both tools handle.
var interopPrograms = []string{
	"counter",             // one task, state in registers
	"threads_tls",         // threads
	"fork_cow",            // a fork tree sharing pages copy-on-write
	"pipe_read",           // pipes
	"sk_unix_pair",        // unix socket pairs with queued messages
	"sk_unix_listen",      // a listening unix socket and connections
	"sk_unix_tree",        // unix sockets shared in a tree
	"sk_unix_peer_closed", // a unix socket whose peer is gone
	"file_offset",         // regular files
	"zombie",              // zombie children
	"itimer_pending",      // a periodic timer with its SIGALRM pending
	"proc_dead",           // files of /proc/PID of a dead PID (a PROCFS remap)
}

// criuRefuses are the programs CRIU 4.2 cannot dump, and why.
var criuRefuses = map[string]string{
	// SO_PASSCRED on a socket with queued messages.
	"sk_unix_pair": "Control messages in queue, not supported",
}

// criuBin is the CRIU binary named by AMBER_CRIU; the test is skipped
// without one (CI has no CRIU).
func criuBin(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("AMBER_CRIU")
	if bin == "" {
		t.Skip("set AMBER_CRIU to a CRIU binary to run the interop tests")
	}
	return bin
}

// criu runs CRIU with args in the case's scratch dir.
func (c *zcase) criu(bin string, args ...string) amberResult {
	r := runAmber(bin, c.dir, c.prog, args...)
	c.results = append(c.results, r)
	return r
}

// TestCriuDumpsAmberRestores dumps each program with CRIU and restores it
// with amber: the program then checks its own state.
func TestCriuDumpsAmberRestores(t *testing.T) {
	for _, name := range interopPrograms {
		t.Run(name, func(t *testing.T) {
			bin := criuBin(t)
			c := startCase(t, name)
			tree := descendants(c.pid)
			r := c.criu(bin, c.dumpArgs()...)
			if why, ok := criuRefuses[name]; ok {
				// Still a check: the day CRIU dumps it, this fails.
				requireFailure(t, criuLog(r, c.images), why)
				c.mustPass()
				return
			}
			if r.err != nil {
				t.Fatalf("criu dump failed: %v", r)
			}
			c.reapDumped(tree)
			c.mustRestoreDetached()
			c.mustPass()
		})
	}
}

// TestAmberDumpsCriuRestores dumps each program with amber and restores
// it with CRIU.
func TestAmberDumpsCriuRestores(t *testing.T) {
	for _, name := range interopPrograms {
		t.Run(name, func(t *testing.T) {
			bin := criuBin(t)
			c := startCase(t, name)
			c.mustDump()
			pidfile := c.pidfile()
			if r := c.criu(bin, c.restoreArgs(pidfile, "-d")...); r.err != nil {
				t.Fatalf("criu restore failed: %v", r)
			}
			c.checkRestoredPid(pidfile)
			if why, ok := criuMisrestores[name]; ok {
				c.mustFailCheck(why)
				return
			}
			c.mustPass()
		})
	}
}

// criuMisrestores are the programs CRIU 4.2 restores wrong from amber's
// images and from its own alike, with what the program then says.
var criuMisrestores = map[string]string{
	// A datagram socket whose peer closed gets ENOTCONN, not ECONNREFUSED.
	"sk_unix_peer_closed": "send to a closed peer: Transport endpoint is not connected, want ECONNREFUSED",
}

// mustFailCheck sends SIGTERM to the program and requires that it fails
// its check saying why.
func (c *zcase) mustFailCheck(why string) {
	c.t.Helper()
	if err := unix.Kill(c.pid, unix.SIGTERM); err != nil {
		c.t.Fatalf("SIGTERM pid %d: %v", c.pid, err)
	}
	ws, err := waitPid(c.pid, exitTimeout)
	if err != nil {
		c.t.Fatalf("after SIGTERM: %v", err)
	}
	if ws.Exited() && ws.ExitStatus() == 0 || !strings.Contains(c.output(), why) {
		c.t.Fatalf("%s: %s, output:\n%s\nwant CRIU's known failure %q", c.prog.name, describeStatus(ws), c.output(), why)
	}
}

// criuLog is r with CRIU's dump log as its stderr: CRIU writes its
// errors there (-o), not to stderr.
func criuLog(r amberResult, images string) amberResult {
	if b, err := os.ReadFile(filepath.Join(images, "dump.log")); err == nil {
		r.stderr = string(b)
	}
	return r
}

// TestImagesForCriu checks, without CRIU, that amber's dump of a program
// blocked in read(2) follows the rules by which CRIU 4.2's restore reads
// images: the inventory's root_ids are not the root task's (CRIU: "Image
// corruption on kIDs data"), the mm image holds at most 44 auxv words
// (more is "Image corrupted"), the [vdso] pages are saved (CRIU reads
// the dumped vdso's symbols: "vdso: Invalid ELF magic"), and the
// registers hold the read about to be entered again, since CRIU's
// restore ignores orig_rax; the kernel's restart code goes to amber's
// own file. Then amber restores the images and the program passes.
func TestImagesForCriu(t *testing.T) {
	c := startCase(t, "pipe_read")
	c.mustDump()
	dir, err := image.OpenDir(c.images)
	if err != nil {
		t.Fatal(err)
	}
	inv, err := image.ReadOne(dir.InventoryPath(), image.Inventory, func() *inventory.InventoryEntry { return new(inventory.InventoryEntry) })
	if err != nil {
		t.Fatal(err)
	}
	ids, err := image.ReadOne(dir.IDsPath(c.pid), image.IDs, func() *criucore.TaskKobjIdsEntry { return new(criucore.TaskKobjIdsEntry) })
	if err != nil {
		t.Fatal(err)
	}
	if root := inv.GetRootIds(); root.GetFilesId() == ids.GetFilesId() || root.GetMntNsId() != ids.GetMntNsId() || root.GetPidNsId() != ids.GetPidNsId() {
		t.Errorf("inventory root_ids %v against the root task's %v: want another files_id, the same namespaces", root, ids)
	}
	m, err := mem.ReadMM(dir.MMPath(c.pid))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(m.GetMmSavedAuxv()); n > 44 || n == 0 {
		t.Errorf("%d auxv words; CRIU reads 1 to 44", n)
	}
	_, pm, err := mem.ReadPagemap(dir.PagemapPath(c.pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range m.GetVmas() {
		if v.GetStatus()&mem.StatusVdso == 0 {
			continue
		}
		saved := false
		for _, e := range pm {
			saved = saved || e.GetVaddr() <= v.GetStart() && v.GetEnd() <= e.GetVaddr()+mem.NrPages(e)*4096
		}
		if !saved {
			t.Errorf("[vdso] %#x-%#x not in the pagemap", v.GetStart(), v.GetEnd())
		}
	}
	core, err := image.ReadOne(dir.CorePath(c.pid), image.Core, func() *criucore.CoreEntry { return new(criucore.CoreEntry) })
	if err != nil {
		t.Fatal(err)
	}
	regs := core.GetThreadInfo().GetGpregs()
	if regs.GetOrigAx() != unix.SYS_READ || regs.GetAx() != unix.SYS_READ {
		t.Errorf("registers ax %#x orig_ax %#x; want read (%d) about to be entered again", regs.GetAx(), regs.GetOrigAx(), unix.SYS_READ)
	}
	codes, err := image.ReadRestarts(dir)
	if err != nil {
		t.Fatal(err)
	}
	if codes[c.pid] != 512 { // ERESTARTSYS
		t.Errorf("restart codes %v; want %d: 512", codes, c.pid)
	}
	c.mustRestoreDetached()
	c.mustPass()
}
