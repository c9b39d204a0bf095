package compel

import (
	"errors"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (ptrace, clone3 with set_tid)")
	}
}

// freePid returns a PID that no process has right now.
func freePid(t *testing.T) int {
	for pid := 20000; pid < 30000; pid += 7 {
		if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); errors.Is(err, os.ErrNotExist) {
			return pid
		}
	}
	t.Fatal("no free pid")
	return 0
}

func TestSeizeInfectCure(t *testing.T) {
	requireRoot(t)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cmd := exec.Command("sleep", "100")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	task, err := Seize(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	before, _ := task.Regs()
	vdso := findVdso(t, task.Pid)
	p, err := Infect(task, []Range{vdso})
	if err != nil {
		t.Fatal(err)
	}
	pid, err := p.Syscall(unix.SYS_GETPID)
	if err != nil || int(pid) != task.Pid {
		t.Fatalf("getpid in task = %d, %v; want %d", pid, err, task.Pid)
	}
	if err := p.Write(p.Scratch, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if err := p.Read(p.Scratch, buf); err != nil || string(buf) != "hello" {
		t.Fatalf("scratch read %q, %v", buf, err)
	}
	if err := p.Cure(); err != nil {
		t.Fatal(err)
	}
	after, _ := task.Regs()
	if after != before {
		t.Fatalf("registers not restored: %+v != %+v", after, before)
	}
	if err := task.Detach(); err != nil {
		t.Fatal(err)
	}
	// The sleep restarts its nanosleep and is still alive.
	if err := unix.Kill(task.Pid, 0); err != nil {
		t.Fatalf("task died after cure: %v", err)
	}
}

func findVdso(t *testing.T, pid int) Range {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/maps")
	if err != nil {
		t.Fatal(err)
	}
	var r Range
	for _, line := range splitLines(string(b)) {
		if len(line) > 6 && line[len(line)-6:] == "[vdso]" {
			var s, e uint64
			parseRange(line, &s, &e)
			r = Range{s, e}
		}
	}
	if r.End == 0 {
		t.Fatal("no vdso")
	}
	return r
}

func TestStubForkAndTable(t *testing.T) {
	requireRoot(t)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	stub, err := StartStub()
	if err != nil {
		t.Fatal(err)
	}
	defer stub.Close()
	want := freePid(t)
	child, err := stub.Fork(want)
	if err != nil {
		t.Fatal(err)
	}
	defer child.Kill()
	if child.Pid != want {
		t.Fatalf("pid %d, want %d", child.Pid, want)
	}
	if _, err := stub.Fork(want); !errors.Is(err, ErrPidInUse) {
		t.Fatalf("second fork of pid %d: %v, want ErrPidInUse", want, err)
	}
	// Map a scratch area in the child, load the executor, run a table.
	const base = 0x200000000
	ret, err := child.SyscallOK(stub.Insn(), unix.SYS_MMAP, base, 1<<16,
		unix.PROT_READ|unix.PROT_WRITE|unix.PROT_EXEC, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_FIXED_NOREPLACE, ^uint64(0), 0)
	if err != nil || ret != base {
		t.Fatalf("mmap scratch: %#x %v", ret, err)
	}
	table := EncodeTable([]Call{
		{Nr: unix.SYS_GETPID},
		{Nr: unix.SYS_GETPPID},
		{Nr: unix.SYS_CLOSE, Args: [6]uint64{999}}, // EBADF stops the table here
		{Nr: unix.SYS_GETPID},
	})
	if err := child.WriteMem(base, ExecutorCode()); err != nil {
		t.Fatal(err)
	}
	if err := child.WriteMem(base+4096, table); err != nil {
		t.Fatal(err)
	}
	err = child.RunTable(base, base+4096, 4)
	var te *TableError
	if !errors.As(err, &te) || te.Index != 2 || te.Errno != unix.EBADF {
		t.Fatalf("RunTable = %v, want entry 2 EBADF", err)
	}
	res := make([]byte, 8)
	child.ReadMem(base+4096+56, res)
	if got := int(res[0]) | int(res[1])<<8 | int(res[2])<<16; got != want {
		t.Fatalf("getpid result in table = %d, want %d", got, want)
	}
	child.ReadMem(base+4096+EntrySize+56, res)
	if got := int(res[0]) | int(res[1])<<8 | int(res[2])<<16; got != os.Getpid() {
		t.Fatalf("getppid = %d, want amber's pid %d (CLONE_PARENT)", got, os.Getpid())
	}
	// A single call through the executor's own syscall instruction.
	if pid, err := child.SyscallOK(base+SyscallInsnOffset, unix.SYS_GETPID); err != nil || int(pid) != want {
		t.Fatalf("single call: %d %v", pid, err)
	}
}
