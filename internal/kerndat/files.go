package kerndat

import (
	"fmt"
	"os"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// tfdIocSetTicks is TFD_IOC_SET_TICKS, _IOW('T', 0, u64): the ioctl a
// restore gives a timerfd its unread expirations with.
const tfdIocSetTicks = 0x40085400

// probeTimerfd makes a timerfd of its own and checks the two things a
// timerfd's dump and restore rest on: fdinfo shows the timer's setting
// (Linux 3.17+), and TFD_IOC_SET_TICKS exists (CONFIG_CHECKPOINT_RESTORE;
// ENOTTY without it).
func probeTimerfd() Status {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_CLOEXEC)
	if err != nil {
		return missing("timerfd_create: %w", err)
	}
	defer unix.Close(fd)
	path := fmt.Sprintf("/proc/self/fdinfo/%d", fd)
	b, err := os.ReadFile(path)
	if err != nil {
		return missing("%w", err)
	}
	for _, key := range []string{"clockid:", "ticks:", "settime flags:", "it_value:", "it_interval:"} {
		if !strings.Contains(string(b), key) {
			return missing("%s shows no %q line for a timerfd", path, key)
		}
	}
	ticks := uint64(1)
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), tfdIocSetTicks, uintptr(unsafe.Pointer(&ticks)))
	if errno != 0 {
		return missing("ioctl(TFD_IOC_SET_TICKS): %w", errno)
	}
	return present()
}
