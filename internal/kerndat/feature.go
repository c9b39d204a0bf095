package kerndat

import (
	"errors"
	"fmt"
	"slices"

	"amber/internal/netfilter"
	"amber/internal/uffd"
)

// Errors of CheckFeature, for callers that tell them apart.
var (
	// ErrUnknownFeature: the name is neither one of CRIU's check features
	// nor one of amber's.
	ErrUnknownFeature = errors.New("unknown feature")
	// ErrNotSupported: CRIU knows the feature, amber does not implement it.
	ErrNotSupported = errors.New("not supported by amber")
	// ErrMissing: amber would use the feature but this kernel lacks it.
	ErrMissing = errors.New("missing on this kernel")
)

// criuFeatures are the names `criu check --feature` accepts (CRIU 4.x,
// criu/cr-check.c).
func criuFeatures() []string {
	return []string{
		"mnt_id", "mem_dirty_track", "aio_remap", "timerfd", "tun", "tun_ns",
		"userns", "fdinfo_lock", "seccomp_suspend", "seccomp_filters",
		"loginuid", "cgroupns", "autofs", "tcp_half_closed", "compat_cr",
		"uffd", "uffd-noncoop", "can_map_vdso", "sk_ns", "sk_unix_file",
		"net_diag_raw", "nsid", "link_nsid", "kcmp_epoll", "timens",
		"external_net_ns", "clone3_set_tid", "newifindex", "nftables",
		"has_ipt_legacy", "pidfd_store", "ns_pid", "apparmor_stacking",
		"network_lock_nftables", "sockopt_buf_lock", "memfd_hugetlb",
		"move_mount_set_group", "openat2", "get_rseq_conf", "ipv6_freebind",
		"pagemap_scan", "timer_cr_ids", "overlayfs_maps", "breakpoints",
		"pagemap_scan_guard_pages",
	}
}

// notSupportedReason explains the CRIU features amber says no to for a
// reason more specific than "not implemented".
func notSupportedReason(name string) string {
	return "amber does not implement this CRIU feature yet"
}

// CheckFeature answers `check --feature name`: nil if amber can use the
// feature on this kernel. name is one of CRIU's feature names or one of
// amber's (Features). The error wraps ErrUnknownFeature, ErrNotSupported or
// ErrMissing.
func (i *Info) CheckFeature(name string) error {
	switch name {
	case "seccomp_filters":
		// Dumped with the filters suspended, restored likewise.
		return i.requireAll(name, "seccomp_filters", "seccomp_suspend")
	case "tcp_half_closed":
		// Connections in CLOSE_WAIT, FIN_WAIT1/2, LAST_ACK and CLOSING are
		// made in repair mode and handed their FINs (sockets/tcp_fin.go).
		return i.requireAll(name, "tcp_repair")
	case "mnt_id":
		// Mount ids in fdinfo (Linux 3.15): amber dumps a tree's mount
		// namespace (package mounts) by mountinfo, whose ids they are.
		return nil
	case "net_diag_raw":
		// CRIU finds raw sockets through sock_diag's raw module; amber
		// dumps them by their descriptors, socket options and
		// addresses (package sockets), on any kernel.
		return nil
	case "pidfd_store":
		return i.requireAll(name, "pidfd_open", "pidfd_getfd")
	case "mem_dirty_track":
		// amber tracks written pages (pre-dump, --track-mem) by
		// userfaultfd's asynchronous write protection, read and re-armed
		// by PAGEMAP_SCAN (mem.TrackFeatures), or where the kernel has
		// none, by soft-dirty bits, as CRIU does.
		err := i.requireAll(name, "uffd", "pagemap_scan")
		if err == nil {
			err = i.requireStatus(name, uffdFeature(i.Userfaultfd, i.UffdFeatures, uffd.FeatureWPAsync|uffd.FeatureWPUnpopulated,
				"asynchronous write protection of unpopulated pages"))
		}
		if err != nil && i.SoftDirty.Present {
			return nil
		}
		return err
	case "has_ipt_legacy":
		// Legacy (x_tables) rules of a network namespace are saved and
		// restored with iptables-legacy-save and -restore.
		return toolStatus(name, netfilter.CheckLegacy())
	case "nftables":
		// nftables rules of a network namespace are saved and restored
		// with nft.
		return toolStatus(name, netfilter.CheckNft())
	case "network_lock_nftables":
		// --network-lock nftables needs sets of concatenated types.
		return toolStatus(name, netfilter.CheckNftLock())
	case "uffd-noncoop":
		if err := i.requireAll(name, "uffd"); err != nil {
			return err
		}
		return i.requireStatus(name, uffdFeature(i.Userfaultfd, i.UffdFeatures, uffd.FeaturesNonCoop, "non-cooperative events"))
	}
	if _, ok := i.Lookup(name); ok {
		return i.requireAll(name, name)
	}
	if slices.Contains(criuFeatures(), name) {
		return fmt.Errorf("feature %s: %w: %s", name, ErrNotSupported, notSupportedReason(name))
	}
	return fmt.Errorf("feature %s: %w", name, ErrUnknownFeature)
}

// requireAll checks that every one of amber's features in names is present.
func (i *Info) requireAll(feature string, names ...string) error {
	for _, n := range names {
		f, ok := i.Lookup(n)
		if !ok {
			return fmt.Errorf("feature %s: %w", n, ErrUnknownFeature)
		}
		if err := i.requireStatus(feature, f.Status); err != nil {
			return err
		}
	}
	return nil
}

// toolStatus answers a feature that rests on a command amber runs
// rather than on the kernel alone: err is why it cannot be used.
func toolStatus(feature string, err error) error {
	if err != nil {
		return fmt.Errorf("feature %s: %w: %w", feature, ErrMissing, err)
	}
	return nil
}

func (i *Info) requireStatus(feature string, s Status) error {
	if s.Present {
		return nil
	}
	return fmt.Errorf("feature %s: %w: %w", feature, ErrMissing, s.Err)
}
