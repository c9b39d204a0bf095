// Package timers dumps and restores a process's interval timers
// (setitimer: real, virtual, profiling) and POSIX timers (timer_create),
// in CRIU's TaskTimersEntry of the core image. Each keeps running with
// the time it had left and its interval.
package timers

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	timerimg "github.com/checkpoint-restore/go-criu/v8/crit/images/timer"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/plan"
)

// Injector runs system calls inside a frozen task (compel.Parasite).
type Injector interface {
	Syscall(nr uintptr, args ...uint64) (uint64, error)
	Read(addr uint64, buf []byte) error
}

// Which interval timers, in CRIU's order.
var itimers = []int{unix.ITIMER_REAL, unix.ITIMER_VIRTUAL, unix.ITIMER_PROF}

// sigevent notification kinds of the kernel.
const (
	sigevSignal   = 0
	sigevNone     = 1
	sigevThreadID = 4
)

// Dump reads pid's timers by running getitimer and timer_gettime in it;
// scratch is task memory the calls may write.
func Dump(inj Injector, pid int, scratch uint64) (*timerimg.TaskTimersEntry, error) {
	e := &timerimg.TaskTimersEntry{}
	var its [3]*timerimg.ItimerEntry
	for i, which := range itimers {
		w, err := getWords(inj, scratch, 4, unix.SYS_GETITIMER, uint64(which), scratch)
		if err != nil {
			return nil, fmt.Errorf("getitimer %d: %w", which, err)
		}
		its[i] = &timerimg.ItimerEntry{Isec: proto.Uint64(w[0]), Iusec: proto.Uint64(w[1]), Vsec: proto.Uint64(w[2]), Vusec: proto.Uint64(w[3])}
	}
	e.Real, e.Virt, e.Prof = its[0], its[1], its[2]
	posix, err := readPosix(pid)
	if err != nil {
		return nil, err
	}
	for _, t := range posix {
		w, err := getWords(inj, scratch, 4, unix.SYS_TIMER_GETTIME, uint64(t.GetItId()), scratch)
		if err != nil {
			return nil, fmt.Errorf("timer_gettime %d: %w", t.GetItId(), err)
		}
		over, err := inj.Syscall(unix.SYS_TIMER_GETOVERRUN, uint64(t.GetItId()))
		if err != nil {
			return nil, fmt.Errorf("timer_getoverrun %d: %w", t.GetItId(), err)
		}
		t.Isec, t.Insec, t.Vsec, t.Vnsec = proto.Uint64(w[0]), proto.Uint64(w[1]), proto.Uint64(w[2]), proto.Uint64(w[3])
		t.Overrun = proto.Uint32(uint32(over))
		e.Posix = append(e.Posix, t)
	}
	return e, nil
}

// getWords runs a call that fills n words at scratch and reads them.
func getWords(inj Injector, scratch uint64, n int, nr uintptr, args ...uint64) ([]uint64, error) {
	if _, err := inj.Syscall(nr, args...); err != nil {
		return nil, err
	}
	b := make([]byte, 8*n)
	if err := inj.Read(scratch, b); err != nil {
		return nil, err
	}
	w := make([]uint64, n)
	for i := range w {
		w[i] = binary.LittleEndian.Uint64(b[8*i:])
	}
	return w, nil
}

// readPosix lists pid's POSIX timers from /proc/PID/timers.
func readPosix(pid int) ([]*timerimg.PosixTimerEntry, error) {
	path := fmt.Sprintf("/proc/%d/timers", pid)
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ts, err := ParsePosix(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return ts, nil
}

// ParsePosix parses /proc/PID/timers: for each timer its ID, signal and
// signal value, notification kind and target, and clock.
func ParsePosix(r io.Reader) ([]*timerimg.PosixTimerEntry, error) {
	var out []*timerimg.PosixTimerEntry
	var cur *timerimg.PosixTimerEntry
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		key, val, ok := strings.Cut(sc.Text(), ": ")
		if !ok {
			return nil, fmt.Errorf("line %d: %q: want KEY: VALUE", n, sc.Text())
		}
		if key == "ID" {
			cur = &timerimg.PosixTimerEntry{}
			out = append(out, cur)
		} else if cur == nil {
			return nil, fmt.Errorf("line %d: %s before ID", n, key)
		}
		if err := setPosixField(cur, key, val); err != nil {
			return nil, fmt.Errorf("line %d: %s: %w", n, key, err)
		}
	}
	return out, sc.Err()
}

func setPosixField(t *timerimg.PosixTimerEntry, key, val string) error {
	switch key {
	case "ID":
		id, err := strconv.ParseUint(val, 10, 32)
		t.ItId = proto.Uint32(uint32(id))
		return err
	case "signal":
		sig, ptr, ok := strings.Cut(val, "/")
		if !ok {
			return fmt.Errorf("%q: want SIGNO/VALUE", val)
		}
		s, err := strconv.ParseUint(sig, 10, 32)
		if err != nil {
			return err
		}
		p, err := strconv.ParseUint(ptr, 16, 64)
		t.SiSigno, t.SivalPtr = proto.Uint32(uint32(s)), proto.Uint64(p)
		return err
	case "notify":
		return setNotify(t, val)
	case "ClockID":
		c, err := strconv.ParseUint(val, 10, 32)
		t.ClockId = proto.Uint32(uint32(c))
		return err
	}
	return nil
}

// setNotify parses "signal/pid.N", "thread/tid.N" or "none/pid.N".
func setNotify(t *timerimg.PosixTimerEntry, val string) error {
	kind, target, ok := strings.Cut(val, "/")
	if !ok {
		return fmt.Errorf("%q: want KIND/TARGET", val)
	}
	switch kind {
	case "signal":
		t.ItSigevNotify = proto.Uint32(sigevSignal)
	case "none":
		t.ItSigevNotify = proto.Uint32(sigevNone)
	case "thread":
		t.ItSigevNotify = proto.Uint32(sigevThreadID)
		_, tid, _ := strings.Cut(target, ".")
		n, err := strconv.Atoi(tid)
		if err != nil {
			return fmt.Errorf("thread target %q: %w", target, err)
		}
		t.NotifyThreadId = proto.Int32(int32(n))
	default:
		return fmt.Errorf("notification %q is not supported", kind)
	}
	return nil
}

// PlanRestore plans arming the interval timers and recreating the POSIX
// timers with their IDs (PR_TIMER_CREATE_RESTORE_IDS) and remaining times.
func PlanRestore(b *plan.Builder, e *timerimg.TaskTimersEntry) {
	if e == nil {
		return
	}
	for i, it := range []*timerimg.ItimerEntry{e.GetReal(), e.GetVirt(), e.GetProf()} {
		if it.GetVsec() == 0 && it.GetVusec() == 0 {
			continue // disarmed
		}
		b.Call(fmt.Sprintf("arm interval timer %d", itimers[i]), unix.SYS_SETITIMER, uint64(itimers[i]),
			b.Uint64s(it.GetIsec(), it.GetIusec(), it.GetVsec(), it.GetVusec()), 0)
	}
	if len(e.GetPosix()) == 0 {
		return
	}
	b.Call("ask timer_create for chosen IDs", unix.SYS_PRCTL, unix.PR_TIMER_CREATE_RESTORE_IDS, unix.PR_TIMER_CREATE_RESTORE_IDS_ON)
	for _, t := range e.GetPosix() {
		planPosix(b, t)
	}
	b.Call("back to allocated timer IDs", unix.SYS_PRCTL, unix.PR_TIMER_CREATE_RESTORE_IDS, unix.PR_TIMER_CREATE_RESTORE_IDS_OFF)
}

func planPosix(b *plan.Builder, t *timerimg.PosixTimerEntry) {
	ev := make([]byte, 64) // struct sigevent
	binary.LittleEndian.PutUint64(ev[0:], t.GetSivalPtr())
	binary.LittleEndian.PutUint32(ev[8:], t.GetSiSigno())
	binary.LittleEndian.PutUint32(ev[12:], t.GetItSigevNotify())
	binary.LittleEndian.PutUint32(ev[16:], uint32(t.GetNotifyThreadId()))
	id := make([]byte, 8)
	binary.LittleEndian.PutUint32(id, t.GetItId())
	b.Call(fmt.Sprintf("create POSIX timer %d", t.GetItId()), unix.SYS_TIMER_CREATE, uint64(t.GetClockId()), b.Bytes(ev), b.Bytes(id))
	if t.GetVsec() == 0 && t.GetVnsec() == 0 {
		return // disarmed
	}
	b.Call(fmt.Sprintf("arm POSIX timer %d", t.GetItId()), unix.SYS_TIMER_SETTIME, uint64(t.GetItId()), 0,
		b.Uint64s(t.GetIsec(), t.GetInsec(), t.GetVsec(), t.GetVnsec()), 0)
}
