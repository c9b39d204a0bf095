package compel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

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

// TestSeizeInfectCure infects a process of several threads, runs calls
// in two of them and cures it: every thread must be back with its
// registers and signal mask, the scratch area and the control socket
// gone, and the process must run on.
func TestSeizeInfectCure(t *testing.T) {
	requireRoot(t)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	pid := startThreaded(t)
	tasks := seizeAll(t, pid)
	// Taken frozen: until then the helper's runtime may still map
	// memory of its own, which infect and cure have nothing to do with.
	before := procSnapshot(t, pid)
	var regs []Regs
	var masks []uint64
	var frozen []Frozen
	for _, task := range tasks {
		r, _ := task.Regs()
		m, _ := task.SigMask()
		xs, err := task.XState()
		if err != nil {
			t.Fatal(err)
		}
		regs, masks = append(regs, r), append(masks, m)
		frozen = append(frozen, Frozen{Task: task, Regs: r, Mask: m, XState: xs})
	}
	var pin unix.CPUSet
	pin.Set(0)
	entry := func(data uint64) []Call {
		return []Call{{Nr: unix.SYS_GETTID}, {Nr: unix.SYS_SIGALTSTACK, Args: [6]uint64{0, data}}}
	}
	p, err := Infect(frozen, Layout{Code: []Range{findVdso(t, pid)}, Stack: findStack(t, pid)}, pin, entry)
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		tp := p.In(task)
		res, ss, err := tp.Entry()
		if err != nil || int(res[0]) != task.Pid {
			t.Fatalf("entry calls of thread %d: %v, %v", task.Pid, res, err)
		}
		// Go gives its threads an alternate signal stack, but one it
		// has just created may not have it yet: what the call wrote
		// must be a stack_t all the same (a stack, or SS_DISABLE).
		if enabled := ss[8]&2 == 0; enabled == (binary.LittleEndian.Uint64(ss[16:]) == 0) {
			t.Fatalf("thread %d: sigaltstack %x", task.Pid, ss[:24])
		}
	}
	for _, task := range []*Task{tasks[0], tasks[len(tasks)-1]} {
		tp := p.In(task)
		res, err := tp.Batch([]Call{{Nr: unix.SYS_GETTID}, {Nr: unix.SYS_GETPID}})
		if err != nil {
			t.Fatal(err)
		}
		if int(res[0]) != task.Pid || int(res[1]) != pid {
			t.Fatalf("gettid, getpid in thread %d = %d, %d", task.Pid, res[0], res[1])
		}
		_, err = tp.Batch([]Call{{Nr: unix.SYS_GETPID}, {Nr: unix.SYS_CLOSE, Args: [6]uint64{99999}}})
		var te *TableError
		if !errors.As(err, &te) || te.Index != 1 || te.Errno != unix.EBADF {
			t.Fatalf("failing batch: %v, want entry 1 EBADF", err)
		}
	}
	if err := p.Cure(); err != nil {
		t.Fatal(err)
	}
	for i, task := range tasks {
		r, _ := task.Regs()
		m, _ := task.SigMask()
		if r != regs[i] || m != masks[i] {
			t.Fatalf("thread %d: registers or mask not given back:\n%+v mask %#x\nwant\n%+v mask %#x", task.Pid, r, m, regs[i], masks[i])
		}
	}
	if after := procSnapshot(t, pid); after != before {
		t.Fatalf("process changed by infect and cure:\n%s\nwas\n%s", after, before)
	}
	for _, task := range tasks {
		if err := task.Detach(); err != nil {
			t.Fatal(err)
		}
	}
	if err := unix.Kill(pid, 0); err != nil {
		t.Fatalf("process died after cure: %v", err)
	}
}

// startThreaded starts a process whose three threads sleep in system
// calls: `sleep` under a shell is single-threaded, so it runs a Python-
// free helper: this test binary itself, as a sleeping child with threads.
func startThreaded(t *testing.T) int {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperThreads$")
	cmd.Env = append(os.Environ(), "AMBER_COMPEL_HELPER=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// A test that fails with the helper still traced leaves threads only
	// their tracer, this test, can reap: reap them, or Wait never ends.
	t.Cleanup(func() { cmd.Process.Kill(); reapThreads(cmd.Process.Pid); cmd.Wait() })
	buf := make([]byte, 6)
	if _, err := io.ReadFull(out, buf); err != nil || string(buf) != "ready\n" {
		t.Fatalf("helper: %q %v", buf, err)
	}
	return cmd.Process.Pid
}

// TestHelperThreads is the process startThreaded starts: Go's runtime
// gives it several threads, most asleep in futex waits.
func TestHelperThreads(t *testing.T) {
	if os.Getenv("AMBER_COMPEL_HELPER") != "1" {
		t.Skip("helper process of TestSeizeInfectCure")
	}
	os.Stdout.WriteString("ready\n")
	time.Sleep(time.Hour)
}

// seizeAll seizes every thread of pid, reading its threads again until
// no new one appeared meanwhile (Go's runtime may start one), the leader
// first.
func seizeAll(t *testing.T, pid int) []*Task {
	t.Helper()
	var tasks []*Task
	seized := map[int]bool{}
	for {
		ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		if err != nil {
			t.Fatal(err)
		}
		added := false
		for _, e := range ents {
			tid, _ := strconv.Atoi(e.Name())
			if seized[tid] {
				continue
			}
			task, err := Seize(tid, 0)
			if err != nil {
				t.Fatal(err)
			}
			seized[tid], added = true, true
			if tid == pid {
				tasks = append([]*Task{task}, tasks...)
			} else {
				tasks = append(tasks, task)
			}
		}
		if !added {
			return tasks
		}
	}
}

// procSnapshot is what an infection must not change: the mappings and
// the descriptor table.
func procSnapshot(t *testing.T, pid int) string {
	t.Helper()
	maps, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		t.Fatal(err)
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range fds {
		names = append(names, f.Name())
	}
	return string(maps) + "fds: " + strings.Join(names, " ")
}

func findStack(t *testing.T, pid int) Range { return findMapping(t, pid, "[stack]") }

func findVdso(t *testing.T, pid int) Range { return findMapping(t, pid, "[vdso]") }

func findMapping(t *testing.T, pid int, name string) Range {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/maps")
	if err != nil {
		t.Fatal(err)
	}
	var r Range
	for _, line := range splitLines(string(b)) {
		if strings.HasSuffix(line, " "+name) {
			var s, e uint64
			parseRange(line, &s, &e)
			r = Range{Start: s, End: e}
		}
	}
	if r.End == 0 {
		t.Fatalf("no %s in the maps of pid %d", name, pid)
	}
	return r
}

// stubChild starts a stub and forks a child of it with a free PID, on
// the test's thread, locked until the test ends (ptrace answers the
// tracer's thread only); both are ended with the test, the child first.
func stubChild(t *testing.T) (*Stub, *Task) {
	t.Helper()
	stub := testStub(t)
	child, err := stub.Fork(freePid(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(child.Kill)
	return stub, child
}

// testStub starts a stub, from a locked thread (its tracer), as root;
// it is killed when the test ends.
func testStub(t *testing.T) *Stub {
	t.Helper()
	requireRoot(t)
	runtime.LockOSThread()
	t.Cleanup(runtime.UnlockOSThread)
	stub, err := StartStub()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stub.Close)
	return stub
}

// base is where the tests map a scratch area with the executor.
const base = 0x200000000

// loadExecutor maps a scratch area of 64 KiB at base in task, with the
// `syscall` at insn, and writes the executor at its start.
func loadExecutor(t *testing.T, task *Task, insn uint64) {
	t.Helper()
	ret, err := task.SyscallOK(insn, unix.SYS_MMAP, base, 1<<16,
		unix.PROT_READ|unix.PROT_WRITE|unix.PROT_EXEC, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_FIXED_NOREPLACE, ^uint64(0), 0)
	if err != nil || ret != base {
		t.Fatalf("mmap scratch: %#x %v", ret, err)
	}
	if err := task.WriteMem(base, ExecutorCode()); err != nil {
		t.Fatal(err)
	}
}

func TestStubForkAndTable(t *testing.T) {
	stub := testStub(t)
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
	loadExecutor(t, child, stub.Insn())
	table := EncodeTable([]Call{
		{Nr: unix.SYS_GETPID},
		{Nr: unix.SYS_GETPPID},
		{Nr: unix.SYS_CLOSE, Args: [6]uint64{999}}, // EBADF stops the table here
		{Nr: unix.SYS_GETPID},
	})
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

// TestOwnedWaitProcessKilled: a process of two threads that amber made,
// killed from outside while its leader runs a table, ends the wait for
// the leader with an error: the timer reaps the other thread, without
// which the dead leader is never reported.
func TestOwnedWaitProcessKilled(t *testing.T) {
	stub, child := stubChild(t)
	child.Timeout = time.Second
	loadExecutor(t, child, stub.Insn())
	tid := child.Pid + 1
	for ; tid < child.Pid+100; tid++ {
		if _, err := os.Stat("/proc/" + strconv.Itoa(tid)); errors.Is(err, os.ErrNotExist) {
			break
		}
	}
	if _, err := child.Clone(base+SyscallInsnOffset, base+8192, CloneSpec{
		Flags: unix.CLONE_VM | unix.CLONE_FS | unix.CLONE_FILES | unix.CLONE_SIGHAND | unix.CLONE_THREAD, Tid: tid}); err != nil {
		t.Fatal(err)
	}
	if err := child.WriteMem(base+4096, EncodeTable([]Call{{Nr: unix.SYS_PAUSE}})); err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(100 * time.Millisecond)
		unix.Kill(child.Pid, unix.SIGKILL)
	}()
	if err := child.RunTable(base, base+4096, 1); err == nil {
		t.Fatal("a table in a killed process succeeded")
	}
}

// TestTableAfterSteppedClone: a task that forked a child through a
// `syscall` followed by an iret opcode (the bytes of whatever code lies
// there: Go's entry point in a static amber) runs a table afterwards.
// Single-stepped through clone3, which stops for its clone event, the
// task keeps the trap flag as its own (the kernel takes the iret for the
// stepped instruction setting it); without clearing it, the table
// trapped after its first instruction, and the restore of a tree with a
// dead process's helper failed at its first call ("errno 0").
func TestTableAfterSteppedClone(t *testing.T) {
	stub, child := stubChild(t)
	if err := child.WriteMem(stub.Insn()+2, []byte{0xcf}); err != nil {
		t.Fatal(err)
	}
	grandchild, err := stub.ForkFrom(child, freePid(t))
	if err != nil {
		t.Fatal(err)
	}
	defer grandchild.Kill()
	loadExecutor(t, child, stub.Insn())
	if err := child.WriteMem(base+4096, EncodeTable([]Call{{Nr: unix.SYS_GETPID}, {Nr: unix.SYS_GETPPID}})); err != nil {
		t.Fatal(err)
	}
	if err := child.RunTable(base, base+4096, 2); err != nil {
		t.Fatalf("table after a stepped clone3: %v", err)
	}
}
