package creds

import (
	"fmt"
	"math/bits"
	"strings"

	"amber/internal/idmap"
	"amber/internal/proc"
)

// capNames are the capabilities Linux 6.18 knows (linux/capability.h),
// by number; CAP_LAST_CAP is the last.
var capNames = [...]string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER",
	"CAP_FSETID", "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP",
	"CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST",
	"CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
	"CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
	"CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
	"CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD",
	"CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP",
	"CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
	"CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
	"CAP_CHECKPOINT_RESTORE",
}

// Capabilities that changing credentials needs: CAP_SETGID and
// CAP_SETUID to take any gid or uid, CAP_SETPCAP to change the bounding
// set, the securebits and the inheritable set beyond the permitted one.
const (
	capSetGID  = 6
	capSetUID  = 7
	capSetPCAP = 8
)

// CapName names capability n as linux/capability.h does, or by number if
// this table does not know it.
func CapName(n int) string {
	if n >= 0 && n < len(capNames) {
		return capNames[n]
	}
	return fmt.Sprintf("capability %d", n)
}

// CapList names every capability of set, comma separated.
func CapList(set uint64) string {
	var names []string
	for _, n := range capBits(set) {
		names = append(names, CapName(n))
	}
	return strings.Join(names, ", ")
}

// capBits lists the numbers of the capabilities in set, in order.
func capBits(set uint64) []int {
	var out []int
	for set != 0 {
		n := bits.TrailingZeros64(set)
		out = append(out, n)
		set &^= 1 << n
	}
	return out
}

// has says whether capability n is in set.
func has(set uint64, n int) bool { return set&(1<<n) != 0 }

// FromStatus returns the credentials /proc/PID/status shows, with the
// securebits, which it does not show.
func FromStatus(st proc.Status, secbits uint32) Creds {
	return Creds{
		Uid: st.Uid, Gid: st.Gid, Groups: st.Groups,
		CapInh: st.CapInh, CapPrm: st.CapPrm, CapEff: st.CapEff, CapBnd: st.CapBnd, CapAmb: st.CapAmb,
		Secbits: secbits, NoNewPrivs: st.NoNewPrivs != 0,
	}
}

// Inner returns c, read from amber's side (/proc/PID/status shows ids
// as the reader's user namespace sees them), with its ids as the user
// namespace of ids sees them: the view the images hold, CRIU's, whose
// parasite reads them with getresuid inside the task. Capabilities are
// the task's own namespace's already. A nil ids leaves c as it is.
func (c Creds) Inner(ids *idmap.Pair) Creds {
	if ids == nil {
		return c
	}
	for i := range c.Uid {
		c.Uid[i], c.Gid[i] = ids.InnerUid(c.Uid[i]), ids.InnerGid(c.Gid[i])
	}
	groups := make([]uint32, len(c.Groups))
	for i, g := range c.Groups {
		groups[i] = ids.InnerGid(g)
	}
	if c.Groups == nil {
		groups = nil
	}
	c.Groups = groups
	return c
}
