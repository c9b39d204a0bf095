package kerndat

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// ShmemDev returns the device of the kernel's internal shmem mount, where
// anonymous shared memory, memfds and SysV shared memory segments live:
// their mappings show this device in /proc/PID/smaps, which tells them
// from files of the same name elsewhere. It asks a memfd of its own.
func ShmemDev() (uint64, error) {
	fd, err := unix.MemfdCreate("amber-probe", unix.MFD_CLOEXEC)
	if err != nil {
		return 0, fmt.Errorf("probe the shmem device: memfd_create: %w", err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, fmt.Errorf("probe the shmem device: fstat memfd: %w", err)
	}
	return st.Dev, nil
}
