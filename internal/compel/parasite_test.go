package compel

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestParasiteCodeAssembles checks parasiteCode and its entry points
// against testdata/parasite.s, assembled by gcc.
func TestParasiteCodeAssembles(t *testing.T) {
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("no gcc to assemble testdata/parasite.s")
	}
	obj := filepath.Join(t.TempDir(), "parasite.o")
	if out, err := exec.Command(gcc, "-c", "testdata/parasite.s", "-o", obj).CombinedOutput(); err != nil {
		t.Fatalf("assemble: %v\n%s", err, out)
	}
	f, err := elf.Open(obj)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	text, err := f.Section(".text").Data()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(text, parasiteCode) {
		t.Fatalf("parasiteCode differs from testdata/parasite.s:\n got %x\nwant %x", parasiteCode, text)
	}
	syms, err := f.Symbols()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]uint64{"setup": entrySetup, "wait": entryWait, "close_table": entryCloseTable, "table": entryTable,
		"restore": entryRestore, "unmap": entryUnmap}
	for _, s := range syms {
		if w, ok := want[s.Name]; ok {
			if s.Value != w {
				t.Errorf("entry %s at %#x, parasite_code.go says %#x", s.Name, s.Value, w)
			}
			delete(want, s.Name)
		}
	}
	if len(want) > 0 {
		t.Errorf("entries missing from testdata/parasite.s: %v", want)
	}
}

// TestThreadAreaEncode checks the fields of a thread's area that the
// routine and rt_sigreturn read.
func TestThreadAreaEncode(t *testing.T) {
	const at = 0x7f00_0001_0000
	fp := make([]byte, 1000)
	fp[0] = 0xaa
	a := threadArea{leader: true, ctl: 7, sigFrame: sigFrame{mask: 0x1234,
		resume:  Regs{Rip: 0x401000, Rsp: 0x7ffe_0000, Rax: 1, R15: 15, Eflags: 0x246, Cs: 0x33, Ss: 0x2b},
		fpstate: fp}}
	a.cpus.Set(1)
	b := a.appendTo(nil, at)
	le := binary.LittleEndian
	if len(b)%64 != 0 || len(b) < areaFrame+frameFPState+len(fp) {
		t.Fatalf("area of %d bytes", len(b))
	}
	if le.Uint32(b[areaPollfd:]) != 7 || le.Uint16(b[areaPollfd+4:]) != unix.POLLIN|unix.POLLRDHUP {
		t.Errorf("pollfd %x", b[areaPollfd:areaPollfd+8])
	}
	if int32(le.Uint32(b[areaPair:])) != -1 || int32(le.Uint32(b[areaAmberFd:])) != -1 || le.Uint64(b[areaLeader:]) != 1 {
		t.Errorf("pair, amber's fd or leader flag wrong")
	}
	if b[areaCPUs] != 2 {
		t.Errorf("cpu set %x, want CPU 1", b[areaCPUs])
	}
	mc := b[areaFrame+frameUctx+ucMcontext:]
	if le.Uint64(mc[8*7:]) != 15 || le.Uint64(mc[8*13:]) != 1 || le.Uint64(mc[8*15:]) != 0x7ffe_0000 || le.Uint64(mc[8*16:]) != 0x401000 {
		t.Errorf("sigcontext r15/rax/rsp/rip wrong")
	}
	if le.Uint16(mc[144:]) != 0x33 || le.Uint16(mc[150:]) != 0x2b || le.Uint64(mc[184:]) != at+areaFrame+frameFPState {
		t.Errorf("sigcontext cs/ss/fpstate wrong")
	}
	if le.Uint64(b[areaFrame+frameUctx+ucSigmask:]) != 0x1234 || le.Uint64(b[areaFrame+frameUctx+ucFlags:]) != 7 {
		t.Errorf("uc_sigmask or uc_flags wrong")
	}
	if b[areaFrame+frameFPState] != 0xaa || (at+areaFrame+frameFPState)%64 != 0 {
		t.Errorf("fpstate not placed, or misaligned")
	}
}

// TestFindGadgets finds the gadgets of a safe system call in a C program
// (libc, vdso) and in this Go test binary.
func TestFindGadgets(t *testing.T) {
	requireRoot(t)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	for _, prog := range []string{"c", "go"} {
		var pid int
		if prog == "c" {
			cmd := exec.Command("sleep", "100")
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
			pid = cmd.Process.Pid
			time.Sleep(50 * time.Millisecond)
		} else {
			pid = startThreaded(t)
		}
		task, err := Seize(pid, 0)
		if err != nil {
			t.Fatal(err)
		}
		g, err := findGadgets(task, executable(t, pid), nil)
		task.Detach()
		if err != nil {
			t.Fatal(err)
		}
		if !g.safe() {
			t.Errorf("%s program: gadgets %+v, want syscall;ret and rt_sigreturn", prog, g)
		}
	}
}

func TestFrameSlot(t *testing.T) {
	stack := Range{Start: 0x7ffe_0000_0000, End: 0x7ffe_0002_1000}
	cases := []struct {
		sp   uint64
		size int
		ok   bool
	}{
		{0x7ffe_0002_0000, 3000, true},
		{0x7ffe_0000_0400, 3000, false}, // too close to the bottom
		{0x7fff_0000_0000, 3000, false}, // not on the stack
	}
	for _, c := range cases {
		slot, ok := frameSlot(c.sp, stack, c.size)
		if ok != c.ok {
			t.Errorf("sp %#x: ok %v, want %v", c.sp, ok, c.ok)
			continue
		}
		if ok && (slot%64 != 0 || slot+uint64(c.size) > c.sp-redZone || slot < stack.Start) {
			t.Errorf("sp %#x: slot %#x overlaps the red zone or leaves the stack", c.sp, slot)
		}
	}
}

// executable lists the executable mappings of pid.
func executable(t *testing.T, pid int) []Range {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		t.Fatal(err)
	}
	var out []Range
	for _, line := range splitLines(string(b)) {
		f := strings.Fields(line)
		if len(f) > 1 && strings.Contains(f[1], "x") && !strings.HasSuffix(line, "[vsyscall]") {
			var r Range
			parseRange(line, &r.Start, &r.End)
			out = append(out, r)
		}
	}
	return out
}

// TestGadgetCache finds the gadgets of a process once, then from the
// cache, and searches again where the cache is wrong.
func TestGadgetCache(t *testing.T) {
	requireRoot(t)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cmd := exec.Command("sleep", "100")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	time.Sleep(50 * time.Millisecond)
	task, err := Seize(cmd.Process.Pid, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer task.Detach()
	code := executable(t, task.Pid)
	for i := range code {
		code[i].ID = fmt.Sprint(i)
	}
	cache := NewGadgetCache()
	want, err := findGadgets(task, code, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, round := range []string{"search", "cached"} {
		got, err := findGadgets(task, code, cache)
		if err != nil || got != want {
			t.Fatalf("%s: %+v, %v; want %+v", round, got, err, want)
		}
	}
	for id, offs := range cache.found {
		for k := range offs {
			if offs[k] >= 0 {
				offs[k]++ // no gadget there
			}
		}
		cache.found[id] = offs
	}
	if got, err := findGadgets(task, code, cache); err != nil || got != want {
		t.Fatalf("with a wrong cache: %+v, %v; want %+v", got, err, want)
	}
}
