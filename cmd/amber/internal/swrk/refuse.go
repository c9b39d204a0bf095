package swrk

import (
	"github.com/checkpoint-restore/go-criu/v8/rpc"
)

// refusal is one option of CRIU's RPC that amber cannot honour (yet): a
// request that sets it gets an error response naming it, rather than a
// dump or restore that silently does less than the client asked.
type refusal struct {
	field  string // its name in rpc.proto
	on     phase  // the requests it matters to
	set    func(*rpc.CriuOpts) bool
	reason string
}

// phase says which requests an option matters to.
type phase int

const (
	onDump phase = 1 << iota
	onRestore
	onBoth = onDump | onRestore
)

func (r refusal) appliesTo(kind rpc.CriuReqType) bool {
	switch kind {
	case rpc.CriuReqType_DUMP, rpc.CriuReqType_PRE_DUMP, rpc.CriuReqType_SINGLE_PRE_DUMP:
		return r.on&onDump != 0
	case rpc.CriuReqType_RESTORE:
		return r.on&onRestore != 0
	}
	return false
}

// Reasons shared by several options.
const (
	noNamespaces = "not supported yet: amber makes the tree's namespaces anew, joining only a network namespace named by external net[INO]:KEY"
	noMounts     = "not supported yet: amber restores the mounts its images hold, the external ones named by ext_mnt"
	noCgroups    = "not supported yet: amber saves CRIU's built-in cgroup properties of every controller"
	dumpOnly     = "an option of pre-dumps and dumps"
	notYet       = "not supported yet"
)

// refusals lists the options amber refuses. The options not listed are
// honoured (images_dir_fd, images_dir, work_dir_fd, pid, leave_running,
// tcp_established, shell_job, log_level, log_file, log_to_stderr,
// notify_scripts, ghost_limit, timeout, track_mem, parent_img, ps on a
// dump or pre-dump, lazy_pages) or harmless to accept because
// amber already behaves as they ask or they tune something amber does
// not do: pre_dump_mode (pre-dumps only), network_lock (honoured on a
// dump; a restore lifts the lock the dump's images name), weak_sysctls
// (amber always skips a sysctl this kernel lacks), mntns_compat_mode,
// skip_file_rwx_check (a check amber does not make), unprivileged,
// display_stats, manage_cgroups, manage_cgroups_mode, cg_root,
// freeze_cgroup, cgroup_yard, empty_ns, veths and inherit_fd on restore (honoured)
// (the engine's network namespace is used as given), tcp_skip_in_flight
// on a dump (honoured), rst_sibling (see
// settings.rstSibling), evasive_devices (CRIU's fallback for a device
// file whose path is gone: amber opens device files by their path and
// fails naming it if the path is gone, which is what CRIU does when
// its fallback finds nothing either), cpu_cap
// at its default, orphan_pts_master (honoured: a container's terminal,
// whose new master goes to the client in the orphan-pts-master
// notification), and every boolean set to false.
func refusals() []refusal {
	return []refusal{
		{"skip_mnt", onBoth, func(o *rpc.CriuOpts) bool { return len(o.SkipMnt) > 0 }, notYet},
		{"auto_ext_mnt", onBoth, func(o *rpc.CriuOpts) bool { return o.GetAutoExtMnt() }, noMounts},
		{"ext_sharing", onBoth, func(o *rpc.CriuOpts) bool { return o.GetExtSharing() }, noMounts},
		{"ext_masters", onBoth, func(o *rpc.CriuOpts) bool { return o.GetExtMasters() }, noMounts},
		{"enable_fs", onBoth, func(o *rpc.CriuOpts) bool { return len(o.EnableFs) > 0 }, noMounts},
		{"join_ns", onBoth, func(o *rpc.CriuOpts) bool { return len(o.JoinNs) > 0 }, noNamespaces},
		{"empty_ns", onBoth, func(o *rpc.CriuOpts) bool { return o.GetEmptyNs()&^emptyNsNet != 0 }, "only CLONE_NEWNET is allowed, as in CRIU"},
		{"cgroup_props", onBoth, func(o *rpc.CriuOpts) bool { return o.CgroupProps != nil }, noCgroups},
		{"cgroup_props_file", onBoth, func(o *rpc.CriuOpts) bool { return o.CgroupPropsFile != nil }, noCgroups},
		{"cgroup_dump_controller", onBoth, func(o *rpc.CriuOpts) bool { return len(o.CgroupDumpController) > 0 }, noCgroups},
		{"inherit_fd", onDump, func(o *rpc.CriuOpts) bool { return len(o.InheritFd) > 0 }, "an option of restore only"},
		{"unix_sk_ino", onBoth, func(o *rpc.CriuOpts) bool { return len(o.UnixSkIno) > 0 }, notYet},
		{"force_irmap", onBoth, func(o *rpc.CriuOpts) bool { return o.GetForceIrmap() }, notYet},
		{"irmap_scan_paths", onBoth, func(o *rpc.CriuOpts) bool { return len(o.IrmapScanPaths) > 0 }, notYet},
		{"leave_stopped", onBoth, func(o *rpc.CriuOpts) bool { return o.GetLeaveStopped() }, notYet},
		{"exec_cmd", onBoth, func(o *rpc.CriuOpts) bool { return len(o.ExecCmd) > 0 }, notYet},
		{"lsm_profile", onBoth, func(o *rpc.CriuOpts) bool { return o.LsmProfile != nil }, notYet},
		{"lsm_mount_context", onBoth, func(o *rpc.CriuOpts) bool { return o.LsmMountContext != nil }, notYet},
		{"status_fd", onBoth, func(o *rpc.CriuOpts) bool { return o.StatusFd != nil }, notYet},
		// CRIU's pidfd store tells a pre-dumped process from a new one
		// with its PID; amber's tracking record names the tracking
		// descriptor's inode, which only that process holds.
		{"pidfd_store_sk", onBoth, func(o *rpc.CriuOpts) bool { return o.PidfdStoreSk != nil }, "not supported: amber tells a pre-dumped process by its tracking descriptor, not by a pidfd store"},
		{"parent_img", onRestore, func(o *rpc.CriuOpts) bool { return o.ParentImg != nil }, dumpOnly},
		{"track_mem", onRestore, func(o *rpc.CriuOpts) bool { return o.GetTrackMem() }, dumpOnly},
		{"auto_dedup", onBoth, func(o *rpc.CriuOpts) bool { return o.GetAutoDedup() }, "not supported yet: amber leaves the parent images as they are"},
		// On a dump, ps is the page server the pages go to, or with
		// lazy_pages where the dump serves them (as in CRIU's service);
		// a restore has no use for it.
		{"ps", onRestore, func(o *rpc.CriuOpts) bool { return o.Ps != nil && !o.GetLazyPages() }, dumpOnly},
		{"tls", onBoth, func(o *rpc.CriuOpts) bool {
			return o.GetTls() || o.TlsCacert != nil || o.TlsCacrl != nil || o.TlsCert != nil || o.TlsKey != nil
		}, "not supported yet: amber's page server and lazy pages speak no TLS"},
		{"cpu_cap", onBoth, func(o *rpc.CriuOpts) bool { return o.CpuCap != nil && o.GetCpuCap() != rpc.Default_CriuOpts_CpuCap }, notYet},
		{"config_file", onBoth, configFileSet, "not supported yet: amber reads no CRIU configuration file"},
	}
}
