package files

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/timerfd"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/proc"
)

// A timerfd is a clock, a remaining time, an interval and the expirations
// not read yet (CRIU's timerfd.c), from fdinfo:
//
//	clockid: 1
//	ticks: 0
//	settime flags: 01
//	it_value: (0, 958841945)
//	it_interval: (3, 0)
//
// it_value is the time left until the next expiration, even for a timer
// set with TFD_TIMER_ABSTIME. Restore arms the timer with that time,
// relative: the time the process spent dumped does not count. An absolute
// timer thus becomes a relative one, and TFD_TIMER_CANCEL_ON_SET (which
// needs an absolute timer) is lost. Ticks come back with the
// TFD_IOC_SET_TICKS ioctl (CONFIG_CHECKPOINT_RESTORE).

// timerfdLink is what /proc/PID/fd shows for a timerfd.
const timerfdLink = "anon_inode:[timerfd]"

// tfdIocSetTicks is TFD_IOC_SET_TICKS, _IOW('T', 0, u64).
const tfdIocSetTicks = 0x40085400

// nsecPerSec bounds the nanoseconds of a timespec.
const nsecPerSec = 1_000_000_000

// addTimerfd records the timerfd at pid's fd.
func (t *Table) addTimerfd(pid, fd int, flags uint32) (uint32, fdinfo.FdTypes, error) {
	tfe, err := readTimerfd(pid, fd)
	if err != nil {
		return 0, 0, err
	}
	tfe.Flags, tfe.Fown = proto.Uint32(flags), newFown()
	return t.addEntry(fdinfo.FdTypes_TIMERFD, func(e *fdinfo.FileEntry, id uint32) {
		tfe.Id = proto.Uint32(id)
		e.Tfd = tfe
	})
}

// settleTries bounds the reads of a periodic timer that keeps expiring
// between its settling and its fdinfo (a short period on a loaded machine).
const settleTries = 100

// readTimerfd reads the timer's state, settled (settleTimerfd). A
// periodic timer that expires again between the settling and the read
// of fdinfo shows 0 time left there once more: it is read again.
func readTimerfd(pid, fd int) (*timerfd.TimerfdEntry, error) {
	for try := 1; ; try++ {
		if err := settleTimerfd(pid, fd); err != nil {
			return nil, fmt.Errorf("timerfd: %w", err)
		}
		info, err := proc.ReadFdinfo(pid, fd)
		if err != nil {
			return nil, err
		}
		tfe, err := parseTimerfd(info.Extra)
		if err != nil {
			return nil, fmt.Errorf("timerfd: fdinfo: %w", err)
		}
		periodic := tfe.GetIsec()|tfe.GetInsec() != 0
		if !periodic || tfe.GetVsec()|tfe.GetVnsec() != 0 || try == settleTries {
			return tfe, nil
		}
	}
}

// settleTimerfd asks the kernel for the timer's setting, through a copy
// of the descriptor. A periodic timer that expired and was not read since
// shows 0 time left in fdinfo, and arming with 0 would disarm it;
// timerfd_gettime moves it on to its next expiration and counts the
// expirations in between as ticks, as a read would.
func settleTimerfd(pid, fd int) error {
	f, err := takeFd(pid, fd)
	if err != nil {
		return err
	}
	defer f.Close()
	var its unix.ItimerSpec
	if err := unix.TimerfdGettime(int(f.Fd()), &its); err != nil {
		return fmt.Errorf("timerfd_gettime: %w", err)
	}
	return nil
}

// parseTimerfd reads the timer's lines of fdinfo.
func parseTimerfd(extra map[string]string) (*timerfd.TimerfdEntry, error) {
	clock, err := numField(extra, "clockid", 10, 31)
	if err != nil {
		return nil, err
	}
	if !validTimerfdClock(uint32(clock)) {
		return nil, fmt.Errorf("clockid %d is not one a timerfd can have", clock)
	}
	ticks, err := numField(extra, "ticks", 10, 64)
	if err != nil {
		return nil, err
	}
	setFlags, err := numField(extra, "settime flags", 8, 32)
	if err != nil {
		return nil, err
	}
	vsec, vnsec, err := parseTimespec(extra, "it_value")
	if err != nil {
		return nil, err
	}
	isec, insec, err := parseTimespec(extra, "it_interval")
	if err != nil {
		return nil, err
	}
	return &timerfd.TimerfdEntry{
		Clockid: proto.Uint32(uint32(clock)), Ticks: proto.Uint64(ticks), SettimeFlags: proto.Uint32(uint32(setFlags)),
		Vsec: proto.Uint64(vsec), Vnsec: proto.Uint64(vnsec), Isec: proto.Uint64(isec), Insec: proto.Uint64(insec),
	}, nil
}

// parseTimespec reads a "(sec, nsec)" field.
func parseTimespec(extra map[string]string, key string) (sec, nsec uint64, err error) {
	v, ok := extra[key]
	if !ok {
		return 0, 0, fmt.Errorf("no %q field", key)
	}
	s, ns, ok := strings.Cut(strings.Trim(v, "()"), ",")
	if !ok || !strings.HasPrefix(v, "(") || !strings.HasSuffix(v, ")") {
		return 0, 0, fmt.Errorf("field %q: %q is not (sec, nsec)", key, v)
	}
	if sec, err = strconv.ParseUint(strings.TrimSpace(s), 10, 63); err == nil {
		nsec, err = strconv.ParseUint(strings.TrimSpace(ns), 10, 63)
	}
	if err != nil || nsec >= nsecPerSec {
		return 0, 0, fmt.Errorf("field %q: %q is not (sec, nsec)", key, v)
	}
	return sec, nsec, nil
}

// validTimerfdClock tells the clocks timerfd_create accepts.
func validTimerfdClock(c uint32) bool {
	switch c {
	case unix.CLOCK_REALTIME, unix.CLOCK_MONOTONIC, unix.CLOCK_BOOTTIME, unix.CLOCK_REALTIME_ALARM, unix.CLOCK_BOOTTIME_ALARM:
		return true
	}
	return false
}

// makeTimerfd creates timerfd e, arms it with the time it had left and its
// interval, and gives it back its unread expirations.
func (p *fdPlanner) makeTimerfd(e *fdinfo.FileEntry) (int, error) {
	tf := e.GetTfd()
	if tf == nil {
		return 0, fmt.Errorf("file id %d: TIMERFD entry without tfd", e.GetId())
	}
	if err := checkTimerfd(tf); err != nil {
		return 0, fmt.Errorf("timerfd file id %d: %w", e.GetId(), err)
	}
	what := fmt.Sprintf("timerfd file id %d", e.GetId())
	fd := p.create(fmt.Sprintf("%s clock %d", what, tf.GetClockid()), unix.SYS_TIMERFD_CREATE, uint64(tf.GetClockid()), nonblock(tf.GetFlags()))
	if tf.GetVsec()|tf.GetVnsec()|tf.GetIsec()|tf.GetInsec() != 0 {
		// struct itimerspec: it_interval, then it_value.
		spec := p.b.Uint64s(tf.GetIsec(), tf.GetInsec(), tf.GetVsec(), tf.GetVnsec())
		p.b.Call(fmt.Sprintf("arm %s: %d.%09d s left, interval %d.%09d s", what, tf.GetVsec(), tf.GetVnsec(), tf.GetIsec(), tf.GetInsec()),
			unix.SYS_TIMERFD_SETTIME, uint64(fd), 0, spec, 0)
	}
	if ticks := tf.GetTicks(); ticks != 0 {
		p.b.Call(fmt.Sprintf("give %s its %d unread expirations", what, ticks), unix.SYS_IOCTL, uint64(fd), tfdIocSetTicks, p.b.Uint64s(ticks))
	}
	return fd, nil
}

// checkTimerfd refuses what timerfd_create or timerfd_settime would.
func checkTimerfd(tf *timerfd.TimerfdEntry) error {
	if !validTimerfdClock(tf.GetClockid()) {
		return fmt.Errorf("clockid %d is not one a timerfd can have", tf.GetClockid())
	}
	if tf.GetVnsec() >= nsecPerSec || tf.GetInsec() >= nsecPerSec || int64(tf.GetVsec()) < 0 || int64(tf.GetIsec()) < 0 {
		return fmt.Errorf("time left (%d, %d) or interval (%d, %d) is not a valid timespec", tf.GetVsec(), tf.GetVnsec(), tf.GetIsec(), tf.GetInsec())
	}
	return nil
}
