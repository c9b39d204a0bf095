package files

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/timerfd"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
)

// timer adds a timerfd: clock, time left, interval, ticks.
func (l *layout) timer(clock uint32, flags uint32, value, interval [2]uint64, ticks uint64) uint32 {
	return l.entry(fdinfo.FdTypes_TIMERFD, func(e *fdinfo.FileEntry, id uint32) {
		e.Tfd = &timerfd.TimerfdEntry{Id: proto.Uint32(id), Flags: proto.Uint32(flags), Fown: newFown(),
			Clockid: proto.Uint32(clock), Ticks: proto.Uint64(ticks), SettimeFlags: proto.Uint32(0),
			Vsec: proto.Uint64(value[0]), Vnsec: proto.Uint64(value[1]), Isec: proto.Uint64(interval[0]), Insec: proto.Uint64(interval[1])}
	})
}

func TestParseTimerfd(t *testing.T) {
	extra := map[string]string{"clockid": "1", "ticks": "12", "settime flags": "03",
		"it_value": "(1, 958841945)", "it_interval": "(3, 0)"}
	e, err := parseTimerfd(extra)
	if err != nil {
		t.Fatal(err)
	}
	if e.GetClockid() != 1 || e.GetTicks() != 12 || e.GetSettimeFlags() != 3 || e.GetVsec() != 1 ||
		e.GetVnsec() != 958841945 || e.GetIsec() != 3 || e.GetInsec() != 0 {
		t.Errorf("parsed %v", e)
	}
	for key, bad := range map[string]string{
		"clockid": "4", "ticks": "-1", "settime flags": "9", "it_value": "(1 2)", "it_interval": "(1, 1000000000)",
	} {
		saved := extra[key]
		extra[key] = bad
		if _, err := parseTimerfd(extra); err == nil {
			t.Errorf("%s %q parsed", key, bad)
		}
		extra[key] = saved
	}
	delete(extra, "ticks")
	if _, err := parseTimerfd(extra); err == nil || !strings.Contains(err.Error(), "ticks") {
		t.Errorf("no ticks: error %v", err)
	}
}

// TestAddTimerfdLive dumps a periodic timer that expired unread: the
// dump moves it on to its next expiration instead of seeing 0 time left.
func TestAddTimerfdLive(t *testing.T) {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_CLOEXEC|unix.TFD_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	period := unix.NsecToTimespec(int64(50 * time.Millisecond))
	if err := unix.TimerfdSettime(fd, 0, &unix.ItimerSpec{Interval: period, Value: period}, nil); err != nil {
		t.Fatal(err)
	}
	time.Sleep(120 * time.Millisecond)
	tab := NewTable()
	id, typ, err := tab.addTimerfd(os.Getpid(), fd, unix.O_RDWR|unix.O_NONBLOCK)
	if err != nil || typ != fdinfo.FdTypes_TIMERFD {
		t.Fatalf("addTimerfd: %v %v", typ, err)
	}
	e := tab.Entries()[id-1].GetTfd()
	if e.GetClockid() != unix.CLOCK_MONOTONIC || e.GetTicks() < 2 || e.GetVsec()|e.GetVnsec() == 0 ||
		e.GetVnsec() > 50_000_000 || e.GetInsec() != 50_000_000 {
		t.Errorf("entry %v, want 2 ticks or more, up to 50 ms left, interval 50 ms", e)
	}
}

func TestPlanTimerfd(t *testing.T) {
	l := newLayout()
	armed := l.timer(unix.CLOCK_MONOTONIC, unix.O_RDWR, [2]uint64{1, 958841945}, [2]uint64{3, 0}, 0)
	fired := l.timer(unix.CLOCK_REALTIME, unix.O_RDWR|unix.O_NONBLOCK, [2]uint64{}, [2]uint64{}, 1)
	idle := l.timer(unix.CLOCK_BOOTTIME, unix.O_RDWR, [2]uint64{}, [2]uint64{0, 5}, 0)
	l.fd(0, fired, false).fd(3, armed, true).fd(4, idle, false)
	s, prog := runFds(t, l, 0, 1, 2, 3)
	checkTable(t, s, l.in, l.known)
	if ev := simEventAt(t, s, 3, "timerfd"); ev.clock != unix.CLOCK_MONOTONIC || ev.value != [2]uint64{1, 958841945} ||
		ev.interval != [2]uint64{3, 0} || ev.ticks != 0 {
		t.Errorf("fd 3: %v", ev)
	}
	if ev := simEventAt(t, s, 0, "timerfd"); ev.clock != unix.CLOCK_REALTIME || ev.value != [2]uint64{} || ev.ticks != 1 || s.fds[0].f.flags != unix.O_NONBLOCK {
		t.Errorf("fd 0: %v flags %#x, want disarmed with 1 tick, O_NONBLOCK", ev, s.fds[0].f.flags)
	}
	if ev := simEventAt(t, s, 4, "timerfd"); ev.interval != [2]uint64{0, 5} || ev.value != [2]uint64{} {
		t.Errorf("fd 4: %v, want disarmed with interval 5 ns", ev)
	}
	if n := strings.Count(prog.String(), "arm timerfd"); n != 2 {
		t.Errorf("%d timers armed, want 2 (a timer never set is left alone)\n%s", n, prog)
	}
}

func TestPlanTimerfdErrors(t *testing.T) {
	for name, tf := range map[string]func(l *layout) uint32{
		"clock": func(l *layout) uint32 { return l.timer(unix.CLOCK_PROCESS_CPUTIME_ID, 0, [2]uint64{}, [2]uint64{}, 0) },
		"timespec": func(l *layout) uint32 {
			return l.timer(unix.CLOCK_MONOTONIC, 0, [2]uint64{0, 1_000_000_000}, [2]uint64{}, 0)
		},
		"without tfd": func(l *layout) uint32 {
			return l.entry(fdinfo.FdTypes_TIMERFD, func(*fdinfo.FileEntry, uint32) {})
		},
	} {
		l := newLayout()
		l.fd(6, tf(l), false)
		if _, err := planFds(l); err == nil || !strings.Contains(err.Error(), "fd 6") || !strings.Contains(err.Error(), name) {
			t.Errorf("bad %s: error %v", name, err)
		}
	}
}
