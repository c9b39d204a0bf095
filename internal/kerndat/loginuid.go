package kerndat

import (
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// loginuidUnset is what /proc/PID/loginuid shows for a task whose login
// UID was never set, and what resets it.
const loginuidUnset = 4294967295

// probeLoginuid checks that a task can set its audit login UID and change
// it again (CONFIG_AUDIT, CAP_AUDIT_CONTROL, and an audit configuration
// that does not make it immutable): restore sets a restored task's own.
// A task may write only its own, so the probe runs on a thread of its
// own that it leaves locked, which Go then ends with its changed
// login UID.
func probeLoginuid() Status {
	done := make(chan Status)
	go func() {
		runtime.LockOSThread()
		done <- changeThreadLoginuid()
	}()
	return <-done
}

// changeThreadLoginuid sets the calling thread's login UID to one other
// than it has, then resets it.
func changeThreadLoginuid() Status {
	const path = "/proc/thread-self/loginuid"
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return missing("%s: %w", path, err)
	}
	defer unix.Close(fd)
	buf := make([]byte, 16)
	n, err := unix.Read(fd, buf)
	if err != nil {
		return missing("read %s: %w", path, err)
	}
	cur, err := strconv.ParseUint(strings.TrimSpace(string(buf[:n])), 10, 32)
	if err != nil {
		return missing("%s: %w", path, err)
	}
	other := uint64(0)
	if cur == 0 {
		other = 1
	}
	for _, v := range []uint64{other, loginuidUnset} {
		if _, err := unix.Pwrite(fd, []byte(strconv.FormatUint(v, 10)), 0); err != nil {
			return missing("write %d to %s: %w", v, path, err)
		}
	}
	return present()
}
