package timers

import (
	"encoding/binary"
	"fmt"
	"strings"
	"testing"

	timerimg "github.com/checkpoint-restore/go-criu/v8/crit/images/timer"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/plan"
)

const sample = `ID: 0
signal: 14/0000000000000000
notify: signal/pid.1234
ClockID: 0
ID: 7
signal: 10/00007ffd12345678
notify: signal/tid.1240
ClockID: 1
ID: 8
signal: 0/0000000000000000
notify: none/pid.1234
ClockID: 1
`

func TestParsePosix(t *testing.T) {
	ts, err := ParsePosix(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	if len(ts) != 3 {
		t.Fatalf("%d timers, want 3", len(ts))
	}
	if ts[0].GetItId() != 0 || ts[0].GetSiSigno() != 14 || ts[0].GetItSigevNotify() != sigevSignal || ts[0].GetClockId() != 0 {
		t.Errorf("timer 0: %v", ts[0])
	}
	b := ts[1]
	if b.GetItId() != 7 || b.GetSiSigno() != 10 || b.GetSivalPtr() != 0x7ffd12345678 ||
		b.GetItSigevNotify() != sigevThreadID || b.GetNotifyThreadId() != 1240 || b.GetClockId() != 1 {
		t.Errorf("timer 7: %v", b)
	}
	if c := ts[2]; c.GetItSigevNotify() != sigevNone || c.NotifyThreadId != nil {
		t.Errorf("timer 8: %v", c)
	}
}

func TestParsePosixErrors(t *testing.T) {
	for _, in := range []string{"signal: 14/0\n", "ID: x\n", "ID: 1\nnotify: weird/pid.1\n", "ID 1\n", "ID: 1\nnotify: signal/tid.x\n", "ID: 1\nnotify: signal/who.1\n", "ID: 1\nnotify: signal/pid\n"} {
		if _, err := ParsePosix(strings.NewReader(in)); err == nil {
			t.Errorf("%q: no error", in)
		}
	}
}

func TestPlanRestore(t *testing.T) {
	ts, _ := ParsePosix(strings.NewReader(sample))
	e := emptyTimers()
	e.Real.Vsec, e.Real.Isec = u64(3), u64(1)
	ts[0].Vsec, ts[0].Vnsec = u64(0), u64(500)
	e.Posix = ts
	b := plan.NewBuilder(0x100000000, 0)
	if err := PlanRestore(b, e, true); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range b.Finish().Calls {
		names = append(names, plan.SyscallName(c.Nr))
	}
	want := "setitimer prctl timer_create timer_settime timer_create timer_create prctl"
	if got := strings.Join(names, " "); got != want {
		t.Fatalf("calls %q, want %q", got, want)
	}
	if c := b.Finish().Calls[0]; c.Nr != unix.SYS_SETITIMER || c.Args[0] != unix.ITIMER_REAL {
		t.Fatalf("first call %v", c)
	}
}

// TestPlanRestoreInOrder: without PR_TIMER_CREATE_RESTORE_IDS, the
// timers are made in the order of their IDs, and each ID between them
// is taken and freed, so that the kernel, which gives IDs in turn from
// 0, gives each timer its own; each is checked after.
func TestPlanRestoreInOrder(t *testing.T) {
	mk := func(id uint32, armed bool) *timerimg.PosixTimerEntry {
		e := &timerimg.PosixTimerEntry{ItId: proto.Uint32(id), ClockId: proto.Uint32(unix.CLOCK_MONOTONIC),
			SiSigno: proto.Uint32(uint32(unix.SIGALRM)), ItSigevNotify: proto.Uint32(sigevSignal),
			SivalPtr: proto.Uint64(0), Overrun: proto.Uint32(0), Isec: u64(0), Insec: u64(0), Vsec: u64(0), Vnsec: u64(0)}
		if armed {
			e.Vsec = u64(5)
		}
		return e
	}
	e := emptyTimers()
	e.Posix = []*timerimg.PosixTimerEntry{mk(3, true), mk(1, false)}
	b := plan.NewBuilder(0x100000000, 0)
	if err := PlanRestore(b, e, false); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range b.Finish().Calls {
		call := plan.SyscallName(c.Nr)
		if c.Nr != unix.SYS_TIMER_CREATE {
			call += fmt.Sprintf("(%d)", c.Args[0])
		}
		got = append(got, call)
	}
	want := "timer_create timer_delete(0) timer_create timer_gettime(1) timer_create timer_delete(2) " +
		"timer_create timer_settime(3) timer_gettime(3)"
	if strings.Join(got, " ") != want {
		t.Errorf("calls %q, want %q", strings.Join(got, " "), want)
	}

	e.Posix = []*timerimg.PosixTimerEntry{mk(1, false), mk(1, true)}
	if err := PlanRestore(plan.NewBuilder(0x100000000, 0), e, false); err == nil || !strings.Contains(err.Error(), "two timers") {
		t.Errorf("two timers of one ID: %v", err)
	}
	e.Posix = []*timerimg.PosixTimerEntry{mk(maxSkippedIDs+5, false)}
	if err := PlanRestore(plan.NewBuilder(0x100000000, 0), e, false); err == nil || !strings.Contains(err.Error(), "PR_TIMER_CREATE_RESTORE_IDS") {
		t.Errorf("a timer ID beyond the bound: %v", err)
	}
}

func FuzzParsePosix(f *testing.F) {
	f.Add(sample)
	f.Fuzz(func(t *testing.T, s string) { ParsePosix(strings.NewReader(s)) })
}

// TestRearmReal: a periodic real timer read while its SIGALRM is pending
// shows 0 left; it is dumped with a whole interval, not disarmed.
func TestRearmReal(t *testing.T) {
	u := proto.Uint64
	e := &timerimg.ItimerEntry{Isec: u(0), Iusec: u(50000), Vsec: u(0), Vusec: u(0)}
	rearmReal(e)
	if e.GetVsec() != 0 || e.GetVusec() != 50000 {
		t.Fatalf("value %d.%06d, want the interval", e.GetVsec(), e.GetVusec())
	}
	off := &timerimg.ItimerEntry{Isec: u(0), Iusec: u(0), Vsec: u(0), Vusec: u(0)}
	rearmReal(off)
	if off.GetVusec() != 0 {
		t.Fatalf("a disarmed timer was armed")
	}
	running := &timerimg.ItimerEntry{Isec: u(1), Iusec: u(0), Vsec: u(0), Vusec: u(7)}
	rearmReal(running)
	if running.GetVusec() != 7 {
		t.Fatalf("a running timer's value changed")
	}
}

// TestPlanRestoreExpiredReal: CRIU's image has a periodic real timer
// whose SIGALRM is pending as the kernel showed it, 0 left: it is armed
// for a whole interval, not left disarmed (itimer_pending dumped by
// CRIU lost its interval).
func TestPlanRestoreExpiredReal(t *testing.T) {
	e := emptyTimers()
	e.Real.Iusec = u64(20000)
	b := plan.NewBuilder(0x100000000, 0)
	if err := PlanRestore(b, e, true); err != nil {
		t.Fatal(err)
	}
	p := b.Finish()
	if len(p.Calls) != 1 || p.Calls[0].Nr != unix.SYS_SETITIMER || p.Calls[0].Args[0] != unix.ITIMER_REAL {
		t.Fatalf("plan:\n%s", p)
	}
	at := p.Calls[0].Args[1] - p.Base
	var got [4]uint64
	for i := range got {
		got[i] = binary.LittleEndian.Uint64(p.Image[at+8*uint64(i):])
	}
	if want := [4]uint64{0, 20000, 0, 20000}; got != want {
		t.Errorf("setitimer interval, value %v; want %v", got, want)
	}
	if e.Real.GetVusec() != 0 {
		t.Errorf("the image's entry changed")
	}
}

// TestInNamespace: only timers that signal one thread name a TID, and
// only theirs is rewritten.
func TestInNamespace(t *testing.T) {
	e := &timerimg.TaskTimersEntry{Posix: []*timerimg.PosixTimerEntry{
		{ItId: proto.Uint32(0), ItSigevNotify: proto.Uint32(sigevSignal | sigevThreadID), NotifyThreadId: proto.Int32(5002)},
		{ItId: proto.Uint32(1), ItSigevNotify: proto.Uint32(sigevSignal)},
	}}
	InNamespace(e, func(tid int) int { return tid - 5000 })
	if got := e.Posix[0].GetNotifyThreadId(); got != 2 {
		t.Errorf("thread timer signals tid %d, want 2", got)
	}
	if e.Posix[1].NotifyThreadId != nil {
		t.Errorf("process timer got a thread: %d", e.Posix[1].GetNotifyThreadId())
	}
	InNamespace(nil, func(int) int { return 0 })
}
