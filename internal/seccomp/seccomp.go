package seccomp

import (
	"golang.org/x/sys/unix"
)

// Modes of a thread, as /proc/PID/status's Seccomp field and
// thread_core.seccomp_mode say.
const (
	ModeDisabled = unix.SECCOMP_MODE_DISABLED
	ModeStrict   = unix.SECCOMP_MODE_STRICT
	ModeFilter   = unix.SECCOMP_MODE_FILTER
)

// restoreFlags are the SECCOMP_FILTER_FLAG_* a filter of the images may
// carry: those amber installs it with again.
const restoreFlags = unix.SECCOMP_FILTER_FLAG_TSYNC | unix.SECCOMP_FILTER_FLAG_LOG | unix.SECCOMP_FILTER_FLAG_SPEC_ALLOW

// insnSize is sizeof(struct sock_filter).
const insnSize = 8

// maxInsns is BPF_MAXINSNS, the longest program of one filter.
const maxInsns = 4096

// Filter is one filter of a chain.
type Filter struct {
	Prog  []byte // struct sock_filter instructions
	Flags uint32 // SECCOMP_FILTER_FLAG_*
}

// Thread is the seccomp state of one thread.
type Thread struct {
	Mode  int      // ModeDisabled, ModeStrict or ModeFilter
	Chain []Filter // ModeFilter: its filters, oldest first
}

// same tells whether two chains hold the same programs with the same
// flags, in the same order.
func same(a, b []Filter) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !sameFilter(a[i], b[i]) {
			return false
		}
	}
	return true
}

func sameFilter(a, b Filter) bool {
	return a.Flags == b.Flags && string(a.Prog) == string(b.Prog)
}
