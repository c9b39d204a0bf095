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

// TestImageRegs checks the registers written to an image for a thread
// frozen in a call, as CRIU writes them (its restore would otherwise hand
// the kernel's restart code to the program), and that KernelRegs gives
// back the frozen registers from them and the recorded code.
func TestImageRegs(t *testing.T) {
	const rip = 0x5555_5555_6002
	const none = ^uint64(0)
	neg := func(e int64) uint64 { return uint64(-e) }
	cases := []struct {
		name             string
		rax, origRax     uint64
		wantRax, wantRip uint64
		wantCode         uint64
	}{
		{"ERESTARTSYS", neg(512), unix.SYS_READ, unix.SYS_READ, rip - 2, 512},
		{"ERESTARTNOINTR", neg(513), unix.SYS_WAIT4, unix.SYS_WAIT4, rip - 2, 513},
		{"ERESTARTNOHAND", neg(514), unix.SYS_RT_SIGSUSPEND, unix.SYS_RT_SIGSUSPEND, rip - 2, 514},
		{"ERESTART_RESTARTBLOCK", neg(516), unix.SYS_CLOCK_NANOSLEEP, unix.SYS_CLOCK_NANOSLEEP, rip - 2, 516},
		{"ERESTART_RESTARTBLOCK in restart_syscall", neg(516), unix.SYS_RESTART_SYSCALL, neg(int64(unix.EINTR)), rip, 516},
		{"completed", 42, unix.SYS_READ, 42, rip, 0},
		{"not in a syscall", neg(512), none, neg(512), rip, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			frozen := Regs{Rax: c.rax, Orig_rax: c.origRax, Rip: rip, Rdi: 7}
			img, code := ImageRegs(frozen)
			if img.Rax != c.wantRax || img.Rip != c.wantRip || img.Orig_rax != c.origRax || code != c.wantCode {
				t.Errorf("image rax %#x rip %#x orig_rax %#x code %d, want %#x %#x %#x %d",
					img.Rax, img.Rip, img.Orig_rax, code, c.wantRax, c.wantRip, c.origRax, c.wantCode)
			}
			back, err := KernelRegs(img, code)
			if err != nil {
				t.Fatal(err)
			}
			if back != frozen && code != 0 {
				t.Errorf("KernelRegs gave %+v, want %+v", back, frozen)
			}
		})
	}
}

func TestKernelRegsBadCode(t *testing.T) {
	r := Regs{Rax: unix.SYS_READ, Orig_rax: unix.SYS_READ}
	for _, c := range []struct {
		code uint64
		r    Regs
	}{
		{4, r},
		{512, Regs{Rax: 5, Orig_rax: ^uint64(0)}},
		{512, Regs{Rax: 7, Orig_rax: unix.SYS_READ}},
	} {
		if _, err := KernelRegs(c.r, c.code); err == nil {
			t.Errorf("code %d with rax %#x orig_rax %#x: no error", c.code, c.r.Rax, c.r.Orig_rax)
		}
	}
}
