package kerndat

import (
	"bytes"
	"os"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// cloneArgs is struct clone_args up to set_tid_size (CLONE_ARGS_SIZE_VER1).
type cloneArgs struct {
	Flags, Pidfd, ChildTID, ParentTID, ExitSignal, Stack, StackSize, TLS uint64
	SetTID, SetTIDSize                                                   uint64
}

// probeClone3SetTID calls clone3 with a set_tid pointer but a zero
// set_tid_size, which can never create a task: a kernel with set_tid
// answers EINVAL, one with clone3 but no set_tid E2BIG (the struct is
// larger than it knows), one without clone3 ENOSYS.
func probeClone3SetTID() Status {
	args := cloneArgs{SetTID: ^uint64(0)}
	pid, _, errno := unix.RawSyscall(unix.SYS_CLONE3, uintptr(unsafe.Pointer(&args)), unsafe.Sizeof(args), 0)
	if errno == 0 && pid == 0 {
		// Unreachable: the arguments are invalid. Should a kernel create
		// a task anyway, the copy leaves at once.
		unix.RawSyscall(unix.SYS_EXIT_GROUP, 127, 0, 0)
	}
	switch errno {
	case unix.EINVAL:
		return present()
	case unix.ENOSYS:
		return missing("clone3: %w", errno)
	case unix.E2BIG:
		return missing("clone3 without set_tid: %w", errno)
	case 0:
		return missing("clone3 accepted invalid arguments (created pid %d)", pid)
	default:
		return missing("clone3: unexpected %w", errno)
	}
}

// probePidfd opens a pidfd on this process and takes a copy of that very
// descriptor through pidfd_getfd.
func probePidfd() (open, getfd Status) {
	pidfd, err := unix.PidfdOpen(os.Getpid(), 0)
	if err != nil {
		s := missing("pidfd_open: %w", err)
		return s, missing("needs pidfd_open: %w", err)
	}
	defer unix.Close(pidfd)
	fd, err := unix.PidfdGetfd(pidfd, pidfd, 0)
	if err != nil {
		return present(), missing("pidfd_getfd: %w", err)
	}
	unix.Close(fd)
	return present(), present()
}

// probeProcessVMReadv reads a buffer of this process through
// process_vm_readv and compares it.
func probeProcessVMReadv() Status {
	src := []byte("amber kerndat probe")
	dst := make([]byte, len(src))
	local := []unix.Iovec{{Base: &dst[0], Len: uint64(len(dst))}}
	remote := []unix.RemoteIovec{{Base: uintptr(unsafe.Pointer(&src[0])), Len: len(src)}}
	n, err := unix.ProcessVMReadv(os.Getpid(), local, remote, 0)
	runtime.KeepAlive(src)
	if err != nil {
		return missing("process_vm_readv: %w", err)
	}
	if n != len(src) || !bytes.Equal(src, dst) {
		return missing("process_vm_readv: read %d of %d bytes, or wrong contents", n, len(src))
	}
	return present()
}

// Capability numbers: CAP_SYS_ADMIN is in the first 32-bit word,
// CAP_CHECKPOINT_RESTORE in the second.
const (
	capSysAdmin          = unix.CAP_SYS_ADMIN
	capCheckpointRestore = unix.CAP_CHECKPOINT_RESTORE
)

// probeCaps reads the effective capability set.
func probeCaps() Status {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return missing("capget: %w", err)
	}
	has := func(c uint) bool { return data[c/32].Effective&(1<<(c%32)) != 0 }
	if has(capCheckpointRestore) || has(capSysAdmin) {
		return present()
	}
	return missing("neither CAP_CHECKPOINT_RESTORE nor CAP_SYS_ADMIN is effective")
}
