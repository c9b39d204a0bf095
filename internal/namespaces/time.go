package namespaces

// Time namespaces: the values of CLOCK_MONOTONIC and CLOCK_BOOTTIME as
// the tree saw them when it was dumped, in timens-ID.img (one
// TimensEntry), as CRIU's timens.c. A restore gives the new namespace
// the offsets that make both clocks go on from those values: the time
// between dump and restore does not count, as for a machine suspended.
//
// A namespace's offsets can be set only before any task is in it, so
// the restore sets them on a process that has made the namespace for
// its children (unshare(CLONE_NEWTIME)) and then forks the root from it.

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/timens"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/image"
)

// clockOffsets are the offsets of a time namespace against the
// machine's clocks (/proc/PID/timens_offsets), in nanoseconds.
type clockOffsets struct {
	monotonic, boottime int64
}

// timeClocks are the two clocks a time namespace shifts.
var timeClocks = []struct {
	name string
	id   int32
	off  func(*clockOffsets) *int64
}{
	{"monotonic", unix.CLOCK_MONOTONIC, func(o *clockOffsets) *int64 { return &o.monotonic }},
	{"boottime", unix.CLOCK_BOOTTIME, func(o *clockOffsets) *int64 { return &o.boottime }},
}

// readOffsets reads /proc/PID/timens_offsets: the offsets of the time
// namespace pid's children are born in (its own unless it unshared one).
func readOffsets(pid int) (clockOffsets, error) {
	path := fmt.Sprintf("/proc/%d/timens_offsets", pid)
	f, err := os.Open(path)
	if err != nil {
		return clockOffsets{}, err
	}
	defer f.Close()
	var o clockOffsets
	seen := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) != 3 {
			return clockOffsets{}, fmt.Errorf("%s: line %q: want CLOCK SECONDS NANOSECONDS", path, sc.Text())
		}
		sec, err1 := strconv.ParseInt(fields[1], 10, 64)
		nsec, err2 := strconv.ParseInt(fields[2], 10, 64)
		if err1 != nil || err2 != nil {
			return clockOffsets{}, fmt.Errorf("%s: line %q: bad number", path, sc.Text())
		}
		for _, c := range timeClocks {
			if c.name == fields[0] {
				*c.off(&o) = sec*1e9 + nsec
				seen++
			}
		}
	}
	if err := sc.Err(); err != nil {
		return clockOffsets{}, fmt.Errorf("%s: %w", path, err)
	}
	if seen != len(timeClocks) {
		return clockOffsets{}, fmt.Errorf("%s: want a monotonic and a boottime line", path)
	}
	return o, nil
}

// machineClock is the value of clock id without any time namespace's
// offset: amber's clock less the offset of amber's own namespace.
func machineClock(id int32, own clockOffsets, off func(*clockOffsets) *int64) (int64, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(id, &ts); err != nil {
		return 0, fmt.Errorf("clock_gettime(%d): %w", id, err)
	}
	return ts.Nano() - *off(&own), nil
}

// dumpTime writes timens-ID.img with the clocks of pid's time
// namespace: the machine's clocks plus the namespace's offsets.
func dumpTime(dir image.Dir, id uint32, pid int) error {
	theirs, err := readOffsets(pid)
	if err != nil {
		return fmt.Errorf("time namespace of pid %d: %w", pid, err)
	}
	own, err := readOffsets(os.Getpid())
	if err != nil {
		return fmt.Errorf("amber's time namespace: %w", err)
	}
	e := &timens.TimensEntry{}
	for _, c := range timeClocks {
		now, err := machineClock(c.id, own, c.off)
		if err != nil {
			return err
		}
		v := now + *c.off(&theirs)
		ts := &timens.Timespec{TvSec: proto.Uint64(uint64(v / 1e9)), TvNsec: proto.Uint64(uint64(v % 1e9))}
		if c.id == unix.CLOCK_MONOTONIC {
			e.Monotonic = ts
		} else {
			e.Boottime = ts
		}
	}
	return image.WriteFile(dir.TimensPath(id), image.Timens, e)
}

// RestoreTime gives the time namespace that pid made for its children
// (unshare(CLONE_NEWTIME), no task in it yet) the offsets that make its
// clocks go on from those of timens-ID.img.
func RestoreTime(dir image.Dir, id uint32, pid int) error {
	p := dir.TimensPath(id)
	e, err := image.ReadOne(p, image.Timens, func() *timens.TimensEntry { return new(timens.TimensEntry) })
	if err != nil {
		return err
	}
	saved := map[int32]*timens.Timespec{unix.CLOCK_MONOTONIC: e.GetMonotonic(), unix.CLOCK_BOOTTIME: e.GetBoottime()}
	own, err := readOffsets(os.Getpid())
	if err != nil {
		return fmt.Errorf("amber's time namespace: %w", err)
	}
	var lines strings.Builder
	for _, c := range timeClocks {
		ts := saved[c.id]
		if ts == nil || ts.GetTvSec() > maxClockSec || ts.GetTvNsec() >= 1e9 {
			return fmt.Errorf("%s: %s clock missing or out of range", p, c.name)
		}
		now, err := machineClock(c.id, own, c.off)
		if err != nil {
			return err
		}
		off := int64(ts.GetTvSec())*1e9 + int64(ts.GetTvNsec()) - now
		// Seconds rounded down, so that the nanoseconds are positive,
		// as the kernel wants them.
		sec, nsec := off/1e9, off%1e9
		if nsec < 0 {
			sec, nsec = sec-1, nsec+1e9
		}
		fmt.Fprintf(&lines, "%d %d %d\n", c.id, sec, nsec)
	}
	path := fmt.Sprintf("/proc/%d/timens_offsets", pid)
	if err := os.WriteFile(path, []byte(lines.String()), 0); err != nil {
		return fmt.Errorf("%s: set the offsets of %s: %w", path, p, err)
	}
	return nil
}

// maxClockSec bounds the seconds of a saved clock, far above any uptime
// and below what overflows nanoseconds in an int64.
const maxClockSec = 1 << 32

// nestedTime refuses a task whose children are born in a time namespace
// other than its own: after unshare(CLONE_NEWTIME) that namespace has
// offsets but no task to dump them from, as CRIU refuses it too.
func nestedTime(pid int) error {
	ns, err := inode(pid, Time)
	if err != nil {
		return err
	}
	path := fmt.Sprintf("/proc/%d/ns/time_for_children", pid)
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return fmt.Errorf("time namespace of pid %d: %w", pid, err)
	}
	if st.Ino != ns {
		return fmt.Errorf("pid %d made a time namespace for its children (unshare(CLONE_NEWTIME)) that it is not in: not supported", pid)
	}
	return nil
}
