package plan

import "golang.org/x/sys/unix"

var syscallNames = map[uintptr]string{
	unix.SYS_MMAP: "mmap", unix.SYS_MUNMAP: "munmap", unix.SYS_MREMAP: "mremap",
	unix.SYS_MPROTECT: "mprotect", unix.SYS_MADVISE: "madvise", unix.SYS_OPENAT: "openat",
	unix.SYS_CLOSE: "close", unix.SYS_CLOSE_RANGE: "close_range", unix.SYS_PREADV: "preadv",
	unix.SYS_DUP3: "dup3", unix.SYS_FCNTL: "fcntl", unix.SYS_LSEEK: "lseek",
	unix.SYS_PRCTL: "prctl", unix.SYS_RT_SIGACTION: "rt_sigaction",
	unix.SYS_RT_SIGPROCMASK: "rt_sigprocmask", unix.SYS_SIGALTSTACK: "sigaltstack",
	unix.SYS_RSEQ: "rseq", unix.SYS_CHDIR: "chdir", unix.SYS_FCHDIR: "fchdir", unix.SYS_UMASK: "umask",
	unix.SYS_SETSID: "setsid", unix.SYS_SETPGID: "setpgid", unix.SYS_PRLIMIT64: "prlimit64",
	unix.SYS_SETRESUID: "setresuid", unix.SYS_SETRESGID: "setresgid", unix.SYS_SETGROUPS: "setgroups",
	unix.SYS_PIPE2: "pipe2", unix.SYS_PIDFD_OPEN: "pidfd_open", unix.SYS_PIDFD_GETFD: "pidfd_getfd",
	unix.SYS_SET_TID_ADDRESS: "set_tid_address", unix.SYS_SET_ROBUST_LIST: "set_robust_list",
	unix.SYS_CHROOT: "chroot", unix.SYS_PERSONALITY: "personality",
	unix.SYS_SETITIMER: "setitimer", unix.SYS_TIMER_CREATE: "timer_create", unix.SYS_TIMER_SETTIME: "timer_settime",
	unix.SYS_TIMER_DELETE: "timer_delete", unix.SYS_TIMER_GETTIME: "timer_gettime",
	unix.SYS_EVENTFD2: "eventfd2", unix.SYS_EPOLL_CREATE1: "epoll_create1", unix.SYS_EPOLL_CTL: "epoll_ctl",
	unix.SYS_SIGNALFD4: "signalfd4", unix.SYS_TIMERFD_CREATE: "timerfd_create", unix.SYS_TIMERFD_SETTIME: "timerfd_settime",
	unix.SYS_IOCTL: "ioctl", unix.SYS_INOTIFY_INIT1: "inotify_init1", unix.SYS_INOTIFY_ADD_WATCH: "inotify_add_watch",
	unix.SYS_INOTIFY_RM_WATCH: "inotify_rm_watch", unix.SYS_READ: "read", unix.SYS_SOCKET: "socket",
	unix.SYS_SOCKETPAIR: "socketpair", unix.SYS_BIND: "bind", unix.SYS_LISTEN: "listen", unix.SYS_CONNECT: "connect",
	unix.SYS_SENDMSG: "sendmsg", unix.SYS_SETSOCKOPT: "setsockopt", unix.SYS_MEMFD_CREATE: "memfd_create",
	unix.SYS_FTRUNCATE: "ftruncate", unix.SYS_SHMGET: "shmget", unix.SYS_SHMAT: "shmat", unix.SYS_UNLINK: "unlink",
	unix.SYS_UNLINKAT: "unlinkat", unix.SYS_MKNODAT: "mknodat", unix.SYS_MKDIRAT: "mkdirat", unix.SYS_SYMLINKAT: "symlinkat", unix.SYS_RENAMEAT: "renameat",
	unix.SYS_SENDFILE: "sendfile", unix.SYS_FCHOWN: "fchown", unix.SYS_FCHMOD: "fchmod",
	unix.SYS_WRITE: "write", unix.SYS_SETPRIORITY: "setpriority", unix.SYS_CLONE3: "clone3",
	unix.SYS_SENDTO: "sendto", unix.SYS_SHUTDOWN: "shutdown", unix.SYS_FCHMODAT: "fchmodat",
	unix.SYS_FCHOWNAT: "fchownat", unix.SYS_PWRITE64: "pwrite64", unix.SYS_UTIMENSAT: "utimensat",
	unix.SYS_CAPSET: "capset", unix.SYS_SETFSUID: "setfsuid", unix.SYS_SETFSGID: "setfsgid",
	unix.SYS_SECCOMP: "seccomp", unix.SYS_LINKAT: "linkat",
	unix.SYS_FANOTIFY_INIT: "fanotify_init", unix.SYS_FANOTIFY_MARK: "fanotify_mark",
}

// SyscallName names a system call number for logs.
func SyscallName(nr uintptr) string {
	if n, ok := syscallNames[nr]; ok {
		return n
	}
	return "syscall"
}
