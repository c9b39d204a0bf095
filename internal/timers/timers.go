// Package timers dumps and restores a process's interval timers
// (setitimer: real, virtual, profiling) and POSIX timers (timer_create),
// in CRIU's TaskTimersEntry of the core image. Each keeps running with
// the time it had left and its interval.
package timers

import (
	"bufio"
	"cmp"
	"encoding/binary"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	timerimg "github.com/checkpoint-restore/go-criu/v8/crit/images/timer"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/compel"
	"amber/internal/plan"
	"amber/internal/proc"
)

// Which interval timers, in CRIU's order.
var itimers = []int{unix.ITIMER_REAL, unix.ITIMER_VIRTUAL, unix.ITIMER_PROF}

// sigevent notification kinds of the kernel.
const (
	sigevSignal   = 0
	sigevNone     = 1
	sigevThread   = 2 // glibc's; the kernel never sees it
	sigevThreadID = 4 // a flag: the signal goes to one thread
)

// timeSize is struct itimerval or struct itimerspec: four words.
const timeSize = 32

// Query reads pid's timers by running getitimer, timer_gettime and
// timer_getoverrun in it, into *out.
func Query(pid int, out **timerimg.TaskTimersEntry) (compel.Query, error) {
	posix, err := readPosix(pid)
	if err != nil {
		return compel.Query{}, err
	}
	n := 3 + len(posix)
	if n+len(posix) > compel.MaxBatch/2 {
		return compel.Query{}, fmt.Errorf("pid %d has %d POSIX timers: more than amber dumps", pid, len(posix))
	}
	return compel.Query{
		Calls: func(d uint64) []compel.Call {
			var calls []compel.Call
			for i, which := range itimers {
				calls = append(calls, compel.Call{Nr: unix.SYS_GETITIMER, Args: [6]uint64{uint64(which), d + uint64(i)*timeSize}})
			}
			for i, t := range posix {
				at := d + uint64(3+i)*timeSize
				calls = append(calls, compel.Call{Nr: unix.SYS_TIMER_GETTIME, Args: [6]uint64{uint64(t.GetItId()), at}},
					compel.Call{Nr: unix.SYS_TIMER_GETOVERRUN, Args: [6]uint64{uint64(t.GetItId())}})
			}
			return calls
		},
		DataSize: n * timeSize,
		Decode: func(res []uint64, buf []byte) error {
			*out = decode(posix, res, buf)
			return nil
		},
	}, nil
}

// decode builds the image entry of the timers from the results of the
// calls of Query and what they wrote.
func decode(posix []*timerimg.PosixTimerEntry, res []uint64, buf []byte) *timerimg.TaskTimersEntry {
	w := func(i, j int) uint64 { return binary.LittleEndian.Uint64(buf[i*timeSize+8*j:]) }
	var its [3]*timerimg.ItimerEntry
	for i := range its {
		its[i] = &timerimg.ItimerEntry{Isec: proto.Uint64(w(i, 0)), Iusec: proto.Uint64(w(i, 1)), Vsec: proto.Uint64(w(i, 2)), Vusec: proto.Uint64(w(i, 3))}
	}
	rearmReal(its[0])
	e := &timerimg.TaskTimersEntry{Real: its[0], Virt: its[1], Prof: its[2]}
	for i, t := range posix {
		t.Isec, t.Insec, t.Vsec, t.Vnsec = proto.Uint64(w(3+i, 0)), proto.Uint64(w(3+i, 1)), proto.Uint64(w(3+i, 2)), proto.Uint64(w(3+i, 3))
		t.Overrun = proto.Uint32(uint32(res[3+2*i+1]))
		e.Posix = append(e.Posix, t)
	}
	return e
}

// rearmReal gives a periodic ITIMER_REAL that shows no time left the
// whole interval. The kernel re-arms such a timer only when the process
// takes the SIGALRM it sent, which is then pending: until then getitimer
// says 0, and restored as read the timer would be disarmed for good (the
// SIGALRM restored as pending does not re-arm a timer it did not come
// from).
func rearmReal(e *timerimg.ItimerEntry) {
	if e.GetVsec() == 0 && e.GetVusec() == 0 && (e.GetIsec() != 0 || e.GetIusec() != 0) {
		e.Vsec, e.Vusec = proto.Uint64(e.GetIsec()), proto.Uint64(e.GetIusec())
	}
}

// readPosix lists pid's POSIX timers from /proc/PID/timers.
func readPosix(pid int) ([]*timerimg.PosixTimerEntry, error) {
	path := fmt.Sprintf("/proc/%d/timers", pid)
	f, err := proc.Open(path)
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

// setNotify parses the kernel's "KIND/pid.N" or "KIND/tid.N" (KIND
// signal, none or thread): tid means SIGEV_THREAD_ID, the signal going to
// thread N, as with glibc's SIGEV_THREAD timers, which signal a helper
// thread ("signal/tid.N").
func setNotify(t *timerimg.PosixTimerEntry, val string) error {
	kind, target, ok := strings.Cut(val, "/")
	if !ok {
		return fmt.Errorf("%q: want KIND/TARGET", val)
	}
	var notify uint32
	switch kind {
	case "signal":
		notify = sigevSignal
	case "none":
		notify = sigevNone
	case "thread":
		notify = sigevThread
	default:
		return fmt.Errorf("notification %q is not supported", kind)
	}
	who, id, ok := strings.Cut(target, ".")
	switch {
	case !ok:
		return fmt.Errorf("target %q: want pid.N or tid.N", target)
	case who == "tid":
		n, err := strconv.Atoi(id)
		if err != nil {
			return fmt.Errorf("thread target %q: %w", target, err)
		}
		notify |= sigevThreadID
		t.NotifyThreadId = proto.Int32(int32(n))
	case who != "pid":
		return fmt.Errorf("target %q: want pid.N or tid.N", target)
	}
	t.ItSigevNotify = proto.Uint32(notify)
	return nil
}

// InNamespace rewrites the threads that POSIX timers of e signal
// (SIGEV_THREAD_ID) from the TIDs the dumper sees in /proc/PID/timers to
// those of the tree's own PID namespace, which restore creates the
// threads with: of maps one to the other.
func InNamespace(e *timerimg.TaskTimersEntry, of func(int) int) {
	for _, t := range e.GetPosix() {
		if t.GetItSigevNotify()&sigevThreadID != 0 {
			t.NotifyThreadId = proto.Int32(int32(of(int(t.GetNotifyThreadId()))))
		}
	}
}

// PlanRestore plans arming the interval timers and recreating the POSIX
// timers with their IDs and remaining times: with chosenIDs, the kernel
// has PR_TIMER_CREATE_RESTORE_IDS (Linux 6.15), and timer_create takes
// each ID it is given; without, the timers are made in the order of
// their IDs (planInOrder). A timer that signals one thread needs that
// thread: plan this once every thread of the process exists.
func PlanRestore(b *plan.Builder, e *timerimg.TaskTimersEntry, chosenIDs bool) error {
	if e == nil {
		return nil
	}
	// A CRIU image has the real timer as the kernel showed it; amber's
	// dump re-arms it already (rearmReal).
	real := proto.Clone(e.GetReal()).(*timerimg.ItimerEntry)
	rearmReal(real)
	for i, it := range []*timerimg.ItimerEntry{real, e.GetVirt(), e.GetProf()} {
		if it.GetVsec() == 0 && it.GetVusec() == 0 {
			continue // disarmed
		}
		b.Call(fmt.Sprintf("arm interval timer %d", itimers[i]), unix.SYS_SETITIMER, uint64(itimers[i]),
			b.Uint64s(it.GetIsec(), it.GetIusec(), it.GetVsec(), it.GetVusec()), 0)
	}
	if len(e.GetPosix()) == 0 {
		return nil
	}
	if !chosenIDs {
		return planInOrder(b, e.GetPosix())
	}
	b.Call("ask timer_create for chosen IDs", unix.SYS_PRCTL, unix.PR_TIMER_CREATE_RESTORE_IDS, unix.PR_TIMER_CREATE_RESTORE_IDS_ON)
	for _, t := range e.GetPosix() {
		planPosix(b, t)
	}
	b.Call("back to allocated timer IDs", unix.SYS_PRCTL, unix.PR_TIMER_CREATE_RESTORE_IDS, unix.PR_TIMER_CREATE_RESTORE_IDS_OFF)
	return nil
}

// maxSkippedIDs bounds the IDs planInOrder takes and frees to reach the
// IDs of one process's timers: two calls each.
const maxSkippedIDs = 1 << 14

// planInOrder recreates POSIX timers with their IDs on kernels without
// PR_TIMER_CREATE_RESTORE_IDS, as CRIU does there: such a kernel gives a
// process's timers the IDs 0, 1, 2... in turn, reusing none before they
// wrap at INT_MAX, and a restored process has made none yet. So the
// timers are made in the order of their IDs, and each ID between them is
// taken by a timer deleted at once. Should the kernel give other IDs, the
// restore fails at the first ID freed, armed or checked that is not there.
func planInOrder(b *plan.Builder, posix []*timerimg.PosixTimerEntry) error {
	byID := slices.SortedFunc(slices.Values(posix), func(a, b *timerimg.PosixTimerEntry) int {
		return cmp.Compare(a.GetItId(), b.GetItId())
	})
	if last := byID[len(byID)-1].GetItId(); int(last) >= len(byID)+maxSkippedIDs {
		return fmt.Errorf("POSIX timer %d: an ID this high needs prctl(PR_TIMER_CREATE_RESTORE_IDS) (Linux 6.15) to restore", last)
	}
	ev := make([]byte, 64) // struct sigevent of a timer that signals nothing
	binary.LittleEndian.PutUint32(ev[12:], sigevNone)
	evAddr, idAddr, specAddr := b.Bytes(ev), b.Bytes(make([]byte, 8)), b.Bytes(make([]byte, timeSize))
	var next uint32
	for _, t := range byID {
		id := t.GetItId()
		if id < next {
			return fmt.Errorf("POSIX timer %d: the image has two timers of that ID", id)
		}
		for ; next < id; next++ {
			b.Call(fmt.Sprintf("take POSIX timer ID %d, which no timer had", next), unix.SYS_TIMER_CREATE, unix.CLOCK_MONOTONIC, evAddr, idAddr)
			b.Call(fmt.Sprintf("free POSIX timer ID %d", next), unix.SYS_TIMER_DELETE, uint64(next))
		}
		planPosix(b, t)
		b.Call(fmt.Sprintf("check that POSIX timer %d got its ID", id), unix.SYS_TIMER_GETTIME, uint64(id), specAddr)
		next = id + 1
	}
	return nil
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
