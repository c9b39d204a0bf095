package restore

// Credentials: what every new task starts with, the calls that give each
// thread its own (package creds plans them), and the check that it has
// them once its section ran.

import (
	"fmt"

	"golang.org/x/sys/unix"

	"amber/internal/compel"
	"amber/internal/creds"
	"amber/internal/idmap"
	"amber/internal/plan"
	"amber/internal/proc"
)

// stubCreds are the credentials of amber's stub, which every restored
// task and thread is a copy of until its creds are set: amber's after
// execve, which may differ from amber's own (a root amber with a
// narrower permitted set gets its bounding set back), so they are read
// from the stub. Securebits, which /proc does not show, are amber's
// less SECBIT_KEEP_CAPS, which execve clears. In a user namespace of
// the tree's (users), the ids are that namespace's, as the images hold
// them, and the securebits the kernel's default for a new namespace
// (none); its capabilities, all of it, /proc shows already.
func stubCreds(stub *compel.Stub, users *idmap.Pair) (creds.Creds, error) {
	st, err := proc.ReadStatus(stub.Pid)
	if err != nil {
		return creds.Creds{}, fmt.Errorf("restore stub: %w", err)
	}
	secbits, err := unix.PrctlRetInt(unix.PR_GET_SECUREBITS, 0, 0, 0, 0)
	if err != nil {
		return creds.Creds{}, fmt.Errorf("PR_GET_SECUREBITS: %w", err)
	}
	if users != nil {
		return creds.FromStatus(st, 0).Inner(users), nil
	}
	return creds.FromStatus(st, uint32(secbits)&^creds.SecbitKeepCaps), nil
}

// planCreds gives the thread its dumped credentials. It comes last but
// for the signal mask and pending signals: after it the thread may no
// longer be allowed what the rest of the plan does.
func planCreds(b *plan.Builder, t threadImages, h *host, p *planned) error {
	e := t.core.GetThreadCore().GetCreds()
	if e == nil {
		return nil
	}
	want, err := creds.FromImage(e)
	if err != nil {
		return fmt.Errorf("creds: %w", err)
	}
	calls := b.Len()
	expect, warnings, err := creds.PlanRestore(b, want, h.creds)
	if err != nil {
		return err
	}
	for _, w := range warnings {
		p.warnings = append(p.warnings, fmt.Sprintf("thread %d: %s", t.tid, w))
	}
	if b.Len() == calls {
		return nil // it keeps what it has: nothing to check
	}
	if p.creds == nil {
		p.creds = map[int]creds.Creds{}
	}
	p.creds[t.tid] = expect
	return nil
}

// planDumpable gives the process its dumpable flag back once every
// thread has its credentials: a change of euid, egid, fsuid or fsgid
// resets it to fs.suid_dumpable (commit_creds). PR_SET_DUMPABLE takes 0
// and 1 only; a process dumped with 2 (SUID_DUMP_ROOT) gets 0, which is
// as safe.
func planDumpable(b *plan.Builder, t *taskImages) []string {
	if t.mm.Dumpable == nil {
		return nil // an image from before the field
	}
	var warnings []string
	d := t.mm.GetDumpable()
	if d != 0 && d != 1 {
		warnings = append(warnings, fmt.Sprintf("dumpable %d cannot be set: restored as 0", d))
		d = 0
	}
	b.Call(fmt.Sprintf("set dumpable %d", d), unix.SYS_PRCTL, unix.PR_SET_DUMPABLE, uint64(d))
	return warnings
}

// checkCreds makes sure thread tid of pid (amber's PIDs), imageTid in
// the images, got the credentials planned for it: a set*id call the
// kernel ignored (setfsuid reports nothing) or a rule the plan missed
// must not leave a task with more than it had.
func checkCreds(pid, tid, imageTid int, p *planned, users *idmap.Pair) error {
	want, ok := p.creds[imageTid]
	if !ok {
		return nil
	}
	st, err := proc.ReadTaskStatus(pid, tid)
	if err != nil {
		return err
	}
	if err := creds.Compare(want, creds.FromStatus(st, 0).Inner(users)); err != nil {
		return fmt.Errorf("credentials not restored: %w", err)
	}
	return nil
}
