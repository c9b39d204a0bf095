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

// kcmpEpollTfd is KCMP_EPOLL_TFD of linux/kcmp.h.
const kcmpEpollTfd = 7

// probeKcmpEpoll watches an eventfd from an epoll of its own and asks
// kcmp(KCMP_EPOLL_TFD) whether the watch is on that eventfd (Linux 4.13+,
// CONFIG_KCMP): by it a dump finds the file of a watch whose descriptor
// number the process closed or reused since adding it.
func probeKcmpEpoll() Status {
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		return missing("eventfd: %w", err)
	}
	defer unix.Close(efd)
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return missing("epoll_create1: %w", err)
	}
	defer unix.Close(ep)
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, efd, &unix.EpollEvent{Events: unix.EPOLLIN}); err != nil {
		return missing("epoll_ctl: %w", err)
	}
	slot := struct{ efd, tfd, toff uint32 }{uint32(ep), uint32(efd), 0}
	pid := uintptr(os.Getpid())
	r, _, errno := unix.Syscall6(unix.SYS_KCMP, pid, pid, kcmpEpollTfd, uintptr(efd), uintptr(unsafe.Pointer(&slot)), 0)
	switch {
	case errno != 0:
		return missing("kcmp(KCMP_EPOLL_TFD): %w", errno)
	case r != 0:
		return missing("kcmp(KCMP_EPOLL_TFD) says an epoll's watch is not on the file it was added for")
	}
	return present()
}
