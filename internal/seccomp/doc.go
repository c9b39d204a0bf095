// Package seccomp dumps and restores the seccomp state of every thread:
// its mode (strict or filter) and, in filter mode, its chain of classic
// BPF filters, in CRIU's format.
//
// seccomp.img holds one SeccompEntry listing the filters of the whole
// tree; each thread's core image names its mode (thread_core.seccomp_mode)
// and the index of the first filter of its chain
// (thread_core.seccomp_filter). As CRIU writes and reads it, a chain
// starts at its oldest filter and a filter's `prev` names the next one to
// install, the newest having none. Threads and processes with the same
// chain share its entries.
//
// As CRIU does (criu/seccomp.c), a process whose threads all have the
// leader's chain is recorded with that chain on the leader only, every
// filter flagged SECCOMP_FILTER_FLAG_TSYNC, and its other threads without
// seccomp: installing the chain in the leader gives it to every thread,
// shared, so that a later TSYNC of the program still succeeds. The
// restore goes further for threads that share only the start of their
// chains: the leader installs that common start with TSYNC, each thread
// the rest of its own. Processes with the same chain share its entries in
// the image, but each installs a copy of its own: in the kernel, filters
// are shared between processes only through fork, which the restore does
// before any filter is in place, and no program can tell the difference.
//
// A filter's flags are those the kernel reports (SECCOMP_FILTER_FLAG_LOG)
// and TSYNC; SPEC_ALLOW cannot be told from the task, and a user
// notification listener (NEW_LISTENER) is not restored: such a filter's
// notifications then fail as if its listener had been closed.
//
// The restore installs each thread's filters in its own section, before
// its credentials (installing a filter needs CAP_SYS_ADMIN or
// no_new_privs, and the dumped thread may have neither), and strict mode
// at the very end of the section. Amber's tracing suspends seccomp
// (PTRACE_O_SUSPEND_SECCOMP) from then until the task is released, so the
// rest of the restore is not filtered; the dump suspends it the same way
// for its parasite.
package seccomp
