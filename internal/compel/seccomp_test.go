package compel

import (
	"io"
	"os"
	"os/exec"
	"runtime"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Two filters that allow everything: one of 1 instruction, then one of 2
// flagged SECCOMP_FILTER_FLAG_LOG.
var (
	allow1 = []unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW}}
	allow2 = []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 0},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW},
	}
)

// TestSeccompFilters reads the filters of a process in the order they
// were installed, with the LOG flag the kernel reports, and suspends them.
func TestSeccompFilters(t *testing.T) {
	requireRoot(t)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperSeccomp$")
	cmd.Env = append(os.Environ(), "AMBER_COMPEL_HELPER=seccomp")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	buf := make([]byte, 6)
	if _, err := io.ReadFull(out, buf); err != nil || string(buf) != "ready\n" {
		t.Fatalf("helper: %q %v", buf, err)
	}
	task, err := Seize(cmd.Process.Pid, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer task.Detach()
	filters, err := task.SeccompFilters()
	if err != nil {
		t.Fatal(err)
	}
	if len(filters) != 2 || len(filters[0].Prog) != SockFilterSize || len(filters[1].Prog) != 2*SockFilterSize {
		t.Fatalf("filters %+v, want 1 then 2 instructions", filters)
	}
	if filters[0].Flags != 0 || filters[1].Flags != unix.SECCOMP_FILTER_FLAG_LOG {
		t.Errorf("flags %#x, %#x; want 0, LOG", filters[0].Flags, filters[1].Flags)
	}
	if err := task.SuspendSeccomp(); err != nil {
		t.Fatal(err)
	}
}

// TestHelperSeccomp is the process TestSeccompFilters starts: every
// thread under the two filters.
func TestHelperSeccomp(t *testing.T) {
	if os.Getenv("AMBER_COMPEL_HELPER") != "seccomp" {
		t.Skip("helper process of TestSeccompFilters")
	}
	for _, f := range []struct {
		prog  []unix.SockFilter
		flags uintptr
	}{{allow1, unix.SECCOMP_FILTER_FLAG_TSYNC}, {allow2, unix.SECCOMP_FILTER_FLAG_TSYNC | unix.SECCOMP_FILTER_FLAG_LOG}} {
		fprog := unix.SockFprog{Len: uint16(len(f.prog)), Filter: &f.prog[0]}
		if _, _, e := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, f.flags, uintptr(unsafe.Pointer(&fprog))); e != 0 {
			t.Fatalf("seccomp: %v", e)
		}
	}
	os.Stdout.WriteString("ready\n")
	time.Sleep(time.Hour)
}
