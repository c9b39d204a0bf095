// Package kerndat probes the running kernel for the features amber needs,
// like CRIU's kerndat: probe once with Probe, keep the Info, and consult its
// fields instead of probing again. Probes are real calls where that is cheap
// (a ptrace attach to a short-lived child, an ioctl on /proc/self/pagemap),
// never version comparisons.
package kerndat

import (
	"fmt"
	"strings"

	"golang.org/x/sys/unix"

	"amber/internal/uffd"
)

// Status is the outcome of one probe.
type Status struct {
	Present bool
	// Err says why the feature is missing (nil when Present).
	Err error
}

func present() Status { return Status{Present: true} }

func missing(format string, args ...any) Status {
	return Status{Err: fmt.Errorf(format, args...)}
}

// Info holds the answers of every probe.
type Info struct {
	Kernel            string // uname release, for reports
	PtraceSeize       Status // PTRACE_SEIZE and PTRACE_INTERRUPT
	RseqConfig        Status // PTRACE_GET_RSEQ_CONFIGURATION
	SeccompSuspend    Status // PTRACE_O_SUSPEND_SECCOMP
	SeccompFilters    Status // PTRACE_SECCOMP_GET_FILTER
	Clone3SetTID      Status // clone3() with set_tid
	PidfdOpen         Status // pidfd_open()
	PidfdGetfd        Status // pidfd_getfd()
	ProcessVMReadv    Status // process_vm_readv()
	PagemapScan       Status // ioctl(PAGEMAP_SCAN) on /proc/PID/pagemap
	Userfaultfd       Status // userfaultfd() or /dev/userfaultfd
	UffdWPAsync       Status // UFFD_FEATURE_WP_ASYNC
	MapFiles          Status // readable /proc/PID/map_files
	SoftDirty         Status // soft-dirty bit in /proc/PID/pagemap
	CheckpointCap     Status // CAP_CHECKPOINT_RESTORE or CAP_SYS_ADMIN
	TCPRepair         Status // TCP_REPAIR (net.go)
	SockoptBufLock    Status // SO_BUF_LOCK
	IPv6Freebind      Status // IPV6_FREEBIND
	SkNs              Status // ioctl(SIOCGSKNS): a socket's network namespace
	FdinfoLock        Status // file locks in /proc/PID/fdinfo
	Timens            Status // time namespaces (/proc/PID/timens_offsets)
	Cgroupns          Status // cgroup namespaces (/proc/PID/ns/cgroup)
	Userns            Status // user namespaces and NS_GET_PARENT
	MoveMountSetGroup Status // move_mount(MOVE_MOUNT_SET_GROUP)
	PopulateWrite     Status // madvise(MADV_POPULATE_WRITE)
	Timerfd           Status // timerfd fdinfo and TFD_IOC_SET_TICKS
	NSpid             Status // NSpid in /proc/PID/status
	Loginuid          Status // a task can change its /proc/PID/loginuid
	KcmpEpoll         Status // kcmp(KCMP_EPOLL_TFD)
	TimerIDs          Status // prctl(PR_TIMER_CREATE_RESTORE_IDS)
	GuardPages        Status // MADV_GUARD_INSTALL, seen by PAGEMAP_SCAN

	// UffdFeatures is the feature mask UFFDIO_API reported (0 without
	// userfaultfd).
	UffdFeatures uint64
}

// Probe runs every probe once. It never fails: a probe that cannot run
// reports its feature missing, with the reason in Status.Err.
func Probe() *Info {
	info := &Info{Kernel: kernelRelease()}
	pt := probePtrace()
	info.PtraceSeize, info.RseqConfig = pt.seize, pt.rseq
	info.SeccompSuspend, info.SeccompFilters = pt.seccompSuspend, pt.seccompFilters
	info.Clone3SetTID = probeClone3SetTID()
	info.PidfdOpen, info.PidfdGetfd = probePidfd()
	info.ProcessVMReadv = probeProcessVMReadv()
	info.PagemapScan = probePagemapScan()
	info.Userfaultfd, info.UffdFeatures = probeUserfaultfd()
	info.UffdWPAsync = uffdFeature(info.Userfaultfd, info.UffdFeatures, uffd.FeatureWPAsync, "UFFD_FEATURE_WP_ASYNC")
	info.MapFiles = probeMapFiles()
	info.SoftDirty = ProbeSoftDirty()
	info.CheckpointCap = probeCaps()
	info.TCPRepair, info.SockoptBufLock, info.IPv6Freebind, info.SkNs = probeNet()
	info.FdinfoLock = probeFdinfoLock()
	info.Timens = probeTimens()
	info.Cgroupns = probeCgroupns()
	info.Userns = probeUserns()
	info.MoveMountSetGroup = probeMoveMountSetGroup()
	info.PopulateWrite = ProbePopulateWrite()
	info.Timerfd = probeTimerfd()
	info.NSpid = probeNSpid()
	info.Loginuid = probeLoginuid()
	info.KcmpEpoll = probeKcmpEpoll()
	info.TimerIDs = ProbeTimerIDs()
	info.GuardPages = probeGuardPages()
	return info
}

// Feature is one line of a check report: a probe result with what it means
// to amber.
type Feature struct {
	Name     string // amber's name, CRIU's where CRIU has one
	Desc     string // what was probed
	Required bool   // amber cannot dump or restore without it
	// IfMissing says what amber does without an optional feature.
	IfMissing string
	Status
}

// Features lists every probed feature in report order.
func (i *Info) Features() []Feature {
	return []Feature{
		{"ptrace_seize", "PTRACE_SEIZE and PTRACE_INTERRUPT", true, "", i.PtraceSeize},
		{"get_rseq_conf", "PTRACE_GET_RSEQ_CONFIGURATION", false, "tasks with rseq registered cannot be dumped", i.RseqConfig},
		{"seccomp_suspend", "PTRACE_O_SUSPEND_SECCOMP", false, "tasks under seccomp cannot be dumped or restored", i.SeccompSuspend},
		{"seccomp_filters", "PTRACE_SECCOMP_GET_FILTER", false, "tasks with seccomp filters cannot be dumped", i.SeccompFilters},
		{"clone3_set_tid", "clone3() with set_tid", true, "", i.Clone3SetTID},
		{"pidfd_open", "pidfd_open()", true, "", i.PidfdOpen},
		{"pidfd_getfd", "pidfd_getfd()", true, "", i.PidfdGetfd},
		{"process_vm_readv", "process_vm_readv()", true, "", i.ProcessVMReadv},
		{"pagemap_scan", "ioctl(PAGEMAP_SCAN) on /proc/PID/pagemap", false, "slower: reads /proc/PID/pagemap", i.PagemapScan},
		{"uffd", "userfaultfd", false, "no lazy restore, no memory tracking", i.Userfaultfd},
		{"uffd_wp_async", "UFFD_FEATURE_WP_ASYNC", false, "incremental dumps track memory by soft-dirty bits, if the kernel has them", i.UffdWPAsync},
		{"map_files", "/proc/PID/map_files", false, "mappings of deleted files cannot be dumped", i.MapFiles},
		{"soft_dirty", "soft-dirty bit in /proc/PID/pagemap", false, "not needed where uffd_wp_async is present", i.SoftDirty},
		{"checkpoint_cap", "CAP_CHECKPOINT_RESTORE or CAP_SYS_ADMIN", true, "", i.CheckpointCap},
		{"tcp_repair", "TCP_REPAIR (TCP repair mode)", false, "established TCP connections cannot be dumped or restored", i.TCPRepair},
		{"sockopt_buf_lock", "SO_BUF_LOCK", false, "socket buffer locks are not kept", i.SockoptBufLock},
		{"ipv6_freebind", "IPV6_FREEBIND", false, "IPv6 sockets cannot be dumped", i.IPv6Freebind},
		{"sk_ns", "ioctl(SIOCGSKNS)", false, "sockets cannot be dumped", i.SkNs},
		{"fdinfo_lock", "file locks in /proc/PID/fdinfo", false, "file locks are not seen at dump", i.FdinfoLock},
		{"timens", "time namespaces (/proc/PID/timens_offsets)", false, "trees in a time namespace of their own cannot be dumped", i.Timens},
		{"cgroupns", "cgroup namespaces (/proc/PID/ns/cgroup)", false, "trees in a cgroup namespace of their own cannot be dumped", i.Cgroupns},
		{"move_mount_set_group", "move_mount(MOVE_MOUNT_SET_GROUP)", false, "shared and slave mounts cannot be restored", i.MoveMountSetGroup},
		{"userns", "user namespaces and NS_GET_PARENT", false, "trees in a user namespace of their own cannot be dumped", i.Userns},
		{"populate_write", "madvise(MADV_POPULATE_WRITE)", false, "slower restore: memory is faulted in page by page while it is filled", i.PopulateWrite},
		{"timerfd", "timerfd fdinfo and TFD_IOC_SET_TICKS", false, "timerfds cannot be dumped", i.Timerfd},
		{"ns_pid", "NSpid in /proc/PID/status", false, "trees in a PID namespace cannot be dumped from outside it", i.NSpid},
		{"loginuid", "a task changes its /proc/PID/loginuid", false, "a tree with a login UID other than amber's cannot be restored", i.Loginuid},
		{"kcmp_epoll", "kcmp(KCMP_EPOLL_TFD)", false, "epoll watches cannot be dumped", i.KcmpEpoll},
		{"timer_cr_ids", "prctl(PR_TIMER_CREATE_RESTORE_IDS)", false, "POSIX timers get their IDs by making timers in turn", i.TimerIDs},
		{"pagemap_scan_guard_pages", "guard pages, seen by PAGEMAP_SCAN", false, "guard pages are not seen at dump: they come back as memory", i.GuardPages},
	}
}

// Missing returns the required features that are missing.
func (i *Info) Missing() []Feature {
	var out []Feature
	for _, f := range i.Features() {
		if f.Required && !f.Present {
			out = append(out, f)
		}
	}
	return out
}

// Lookup returns the feature called name in Features.
func (i *Info) Lookup(name string) (Feature, bool) {
	for _, f := range i.Features() {
		if f.Name == name {
			return f, true
		}
	}
	return Feature{}, false
}

// Line formats f as one line of a check report.
func (f Feature) Line() string {
	var state string
	switch {
	case f.Present:
		state = "present"
	case f.Required:
		state = fmt.Sprintf("MISSING (required): %v", f.Err)
	default:
		state = fmt.Sprintf("missing (%s)", f.IfMissing)
	}
	return fmt.Sprintf("%-24s %-42s %s", f.Name, f.Desc, state)
}

func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown"
	}
	return strings.TrimRight(string(u.Release[:]), "\x00")
}
