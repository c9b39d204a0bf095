package compel

import (
	"testing"

	"golang.org/x/sys/unix"
)

// TestReleaseRegs checks the registers a task frozen in a system call
// is released with: the kernel's own restart codes are kept, so that the
// kernel restarts or fails the call by its rules when it releases the task.
func TestReleaseRegs(t *testing.T) {
	const rip = 0x5555_5555_6002
	const none = ^uint64(0)
	neg := func(e int64) uint64 { return uint64(-e) }
	cases := []struct {
		name                 string
		rax, origRax         uint64
		wantRax, wantOrigRax uint64
	}{
		{"ERESTARTSYS", neg(512), unix.SYS_READ, neg(512), unix.SYS_READ},
		{"ERESTARTNOINTR", neg(513), unix.SYS_WAIT4, neg(513), unix.SYS_WAIT4},
		{"ERESTARTNOHAND", neg(514), unix.SYS_PAUSE, neg(514), unix.SYS_PAUSE},
		{"ERESTART_RESTARTBLOCK", neg(516), unix.SYS_CLOCK_NANOSLEEP, neg(514), unix.SYS_CLOCK_NANOSLEEP},
		{"ERESTART_RESTARTBLOCK in restart_syscall", neg(516), unix.SYS_RESTART_SYSCALL, neg(int64(unix.EINTR)), none},
		{"completed with a result", 42, unix.SYS_READ, 42, none},
		{"completed with zero", 0, unix.SYS_CLOSE, 0, none},
		{"failed with EINTR", neg(int64(unix.EINTR)), unix.SYS_READ, neg(int64(unix.EINTR)), none},
		{"failed with EAGAIN", neg(int64(unix.EAGAIN)), unix.SYS_READ, neg(int64(unix.EAGAIN)), none},
		{"not in a syscall, rax looks like a restart", neg(512), none, neg(512), none},
		{"not in a syscall", 0x1234, none, 0x1234, none},
		{"syscall 0 interrupted", neg(512), 0, neg(512), 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := Regs{Rax: c.rax, Orig_rax: c.origRax, Rip: rip, Rdi: 7, Rsp: 0x7fff_0000}
			ReleaseRegs(&r)
			if r.Rax != c.wantRax || r.Orig_rax != c.wantOrigRax {
				t.Errorf("rax %#x orig_rax %#x, want %#x %#x", r.Rax, r.Orig_rax, c.wantRax, c.wantOrigRax)
			}
			if r.Rip != rip || r.Rdi != 7 || r.Rsp != 0x7fff_0000 {
				t.Errorf("other registers changed: rip %#x rdi %#x rsp %#x", r.Rip, r.Rdi, r.Rsp)
			}
		})
	}
}

func TestResumeRegs(t *testing.T) {
	const rip = 0x4000_1002
	neg := func(e int64) uint64 { return uint64(-e) }
	cases := []struct {
		name             string
		rax, orig        uint64
		wantRax, wantRip uint64
	}{
		{"ERESTARTSYS", neg(512), unix.SYS_READ, unix.SYS_READ, rip - 2},
		{"ERESTARTNOINTR", neg(513), unix.SYS_WAIT4, unix.SYS_WAIT4, rip - 2},
		{"ERESTARTNOHAND", neg(514), unix.SYS_PPOLL, unix.SYS_PPOLL, rip - 2},
		{"ERESTART_RESTARTBLOCK", neg(516), unix.SYS_NANOSLEEP, unix.SYS_NANOSLEEP, rip - 2},
		{"ERESTART_RESTARTBLOCK in restart_syscall", neg(516), unix.SYS_RESTART_SYSCALL, neg(int64(unix.EINTR)), rip},
		{"returned", 3, unix.SYS_READ, 3, rip},
		{"not in a call", neg(512), ^uint64(0), neg(512), rip},
	}
	for _, c := range cases {
		r := resumeRegs(Regs{Rax: c.rax, Orig_rax: c.orig, Rip: rip, Rdi: 5})
		if r.Rax != c.wantRax || r.Rip != c.wantRip || r.Orig_rax != ^uint64(0) || r.Rdi != 5 {
			t.Errorf("%s: rax %#x rip %#x orig %#x, want %#x %#x -1", c.name, r.Rax, r.Rip, r.Orig_rax, c.wantRax, c.wantRip)
		}
	}
}
