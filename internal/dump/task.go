package dump

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	corex86 "github.com/checkpoint-restore/go-criu/v8/crit/images/core-x86"
	criucore "github.com/checkpoint-restore/go-criu/v8/crit/images/criu-core"
	criusa "github.com/checkpoint-restore/go-criu/v8/crit/images/criu-sa"
	rseqimg "github.com/checkpoint-restore/go-criu/v8/crit/images/rseq"
	timerimg "github.com/checkpoint-restore/go-criu/v8/crit/images/timer"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/compel"
	"amber/internal/cpu"
	"amber/internal/creds"
	"amber/internal/idmap"
	"amber/internal/proc"
	"amber/internal/rlimit"
	"amber/internal/seccomp"
	"amber/internal/signals"
	"amber/internal/taskattr"
	"amber/internal/timers"
)

// Task states of CRIU's images (compel's task-state.h).
const (
	taskAlive = 1
	taskDead  = 2
)

// user32CS is the code segment of a 32-bit task, which amber cannot dump.
const user32CS = 0x23

// procState is what a dump learns of one frozen process.
type procState struct {
	*frozenProc
	status proc.Status
	// vmas are the mappings of smaps, once joined (layout): smaps is
	// read while the parasite answers.
	vmas    []proc.VMA
	smaps   <-chan smapsRead
	threads []*threadState // the leader first
	// Learnt by running system calls inside the leader.
	acts   []*criusa.SaEntry
	shared [][]byte // siginfo of signals pending for the whole process
	brk    uint64
	// dumpable is PR_GET_DUMPABLE's answer, which setting credentials at
	// restore resets.
	dumpable uint64
	timers   *timerimg.TaskTimersEntry
	attrs    taskattr.Process
}

// threadState is what a dump learns of one frozen thread.
type threadState struct {
	tid       int
	stat      proc.Stat
	status    proc.Status
	regs      compel.Regs
	xstate    []byte
	mask      uint64
	rseq      compel.RseqConfig
	altStack  signals.AltStack
	pending   [][]byte // siginfo of signals pending for the thread
	tidAddr   uint64
	pdeathSig uint64
	secbits   uint32 // each thread has its own, as its other credentials
	seccomp   seccomp.Thread
	sched     taskattr.Sched
}

// collect reads /proc and the registers of every thread, then infects
// the process for what only the task itself can say. The parasite stays
// until the tree is released or killed.
func (t *frozenTree) collect(p *frozenProc) (ps *procState, err error) {
	ps = &procState{frozenProc: p}
	start := time.Now()
	if ps.status, err = proc.ReadStatus(p.pid); err != nil {
		return nil, err
	}
	maps, err := t.readLayout(ps)
	if err != nil {
		return nil, err
	}
	// Registers first: running calls in a thread changes them.
	for _, task := range p.threads {
		th, err := collectThread(p.pid, task)
		if err != nil {
			return nil, fmt.Errorf("thread %d: %w", task.Pid, err)
		}
		ps.threads = append(ps.threads, th)
	}
	leader := p.threads[0]
	if ps.shared, err = leader.PendingSignals(true); err != nil {
		return nil, err
	}
	frozen := make([]compel.Frozen, len(ps.threads))
	for i, th := range ps.threads {
		frozen[i] = compel.Frozen{Task: p.threads[i], Regs: th.regs, Mask: th.mask, XState: th.xstate}
	}
	t.log.Debugf("pid %d: threads read in %v", p.pid, time.Since(start))
	if p.par, err = compel.Infect(frozen, parasiteLayout(p.pid, maps, t.gadgets), t.pinned, threadCalls); err != nil {
		return nil, err
	}
	t.log.Debugf("pid %d: parasite in after %v", p.pid, time.Since(start))
	if ps.vmas == nil {
		t.smapsBeside(ps, maps)
	}
	if err := askProcess(p.par.Leader(), ps); err != nil {
		return nil, err
	}
	for i, th := range ps.threads {
		if err := askThread(p.par.In(p.threads[i]), th); err != nil {
			return nil, fmt.Errorf("thread %d: %w", th.tid, err)
		}
	}
	return ps, nil
}

func collectThread(pid int, t *compel.Task) (*threadState, error) {
	th := &threadState{tid: t.Pid}
	var err error
	if th.stat, err = proc.ReadTaskStat(pid, t.Pid); err != nil {
		return nil, err
	}
	if th.stat.Flags&(pfIOWorker|pfUserWorker|pfKthread) != 0 {
		if err := refuseIOUring(pid); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("a kernel thread of the process (%s: an io_uring or vhost worker): not supported", th.stat.Comm)
	}
	if err := sharesFiles(pid, t.Pid); err != nil {
		return nil, err
	}
	if th.status, err = proc.ReadTaskStatus(pid, t.Pid); err != nil {
		return nil, err
	}
	if th.regs, err = t.Regs(); err != nil {
		return nil, err
	}
	if th.regs.Cs == user32CS {
		return nil, fmt.Errorf("32-bit tasks are not supported")
	}
	if th.xstate, err = t.XState(); err != nil {
		return nil, err
	}
	if th.mask, err = t.SigMask(); err != nil {
		return nil, err
	}
	if th.rseq, err = t.Rseq(); err != nil {
		return nil, err
	}
	if err := abortRseq(t, th); err != nil {
		return nil, err
	}
	if th.pending, err = t.PendingSignals(false); err != nil {
		return nil, err
	}
	// Before the parasite, whose calls the filters must not see.
	if th.seccomp, err = seccomp.Collect(t, th.status.Seccomp); err != nil {
		return nil, fmt.Errorf("seccomp: %w", err)
	}
	if th.sched, err = taskattr.ReadSched(t.Pid); err != nil {
		return nil, err
	}
	return th, nil
}

// sharesFiles refuses a thread with a descriptor table of its own (one
// cloned without CLONE_FILES): the parasite's control socket lives in
// the leader's table, and restore gives every thread its process's.
func sharesFiles(pid, tid int) error {
	r, _, e := unix.Syscall6(unix.SYS_KCMP, uintptr(pid), uintptr(tid), kcmpFiles, 0, 0, 0)
	if e != 0 {
		return fmt.Errorf("kcmp files of pid %d and thread %d: %w", pid, tid, e)
	}
	if r != 0 {
		return errors.New("a descriptor table of its own (cloned without CLONE_FILES): not supported")
	}
	return nil
}

// threadCalls are the calls each thread runs as it enters the parasite,
// for its own state that /proc does not show: alternate signal stack,
// clear-child-tid address, parent death signal, securebits. They write
// from data.
func threadCalls(data uint64) []compel.Call {
	tid, death := data+signals.AltStackSize, data+signals.AltStackSize+8
	return []compel.Call{
		signals.AltStackCall(data),
		{Nr: unix.SYS_PRCTL, Args: [6]uint64{unix.PR_GET_TID_ADDRESS, tid}},
		{Nr: unix.SYS_PRCTL, Args: [6]uint64{unix.PR_GET_PDEATHSIG, death}},
		{Nr: unix.SYS_PRCTL, Args: [6]uint64{unix.PR_GET_SECUREBITS}},
	}
}

// askThread reads what threadCalls learnt in a thread.
func askThread(p *compel.ThreadParasite, th *threadState) error {
	res, buf, err := p.Entry()
	if err != nil {
		return fmt.Errorf("thread state: %w", err)
	}
	th.secbits = uint32(res[3])
	if th.altStack, err = signals.UnmarshalAltStack(buf[:signals.AltStackSize]); err != nil {
		return err
	}
	th.tidAddr = binary.LittleEndian.Uint64(buf[signals.AltStackSize:])
	th.pdeathSig = uint64(binary.LittleEndian.Uint32(buf[signals.AltStackSize+8:])) // an int
	return nil
}

// askProcess runs system calls inside the leader for the state the
// whole process shares.
func askProcess(p *compel.ThreadParasite, ps *procState) error {
	tq, err := timers.Query(ps.pid, &ps.timers)
	if err != nil {
		return fmt.Errorf("timers: %w", err)
	}
	misc := compel.Query{
		Calls: func(uint64) []compel.Call {
			return []compel.Call{{Nr: unix.SYS_BRK}, {Nr: unix.SYS_PRCTL, Args: [6]uint64{unix.PR_GET_DUMPABLE}}}
		},
		Decode: func(res []uint64, _ []byte) error {
			ps.brk, ps.dumpable = res[0], res[1]
			return nil
		},
	}
	// One round trip for all: signal actions, brk, dumpable, timers,
	// attributes.
	if err := p.Queries(signals.ActionsQuery(&ps.acts), misc, tq, taskattr.Query(&ps.attrs)); err != nil {
		return fmt.Errorf("signal actions, brk, dumpable, timers, attributes: %w", err)
	}
	return nil
}

// parasiteLayout tells the parasite where to look for instructions (the
// vdso first, then every executable mapping, each named by its file so
// that gadgets found once serve the whole tree) and where the main stack
// is.
func parasiteLayout(pid int, vmas []proc.VMA, gadgets *compel.GadgetCache) compel.Layout {
	l := compel.Layout{Gadgets: gadgets}
	var other []compel.Range
	for _, v := range vmas {
		r := compel.Range{Start: v.Start, End: v.End}
		switch {
		case v.Path == "[vdso]":
			r.ID = v.Path
			l.Code = append(l.Code, r)
		case v.Path == "[stack]":
			l.Stack = r
		case v.Prot&unix.PROT_EXEC != 0 && v.Path != "[vsyscall]":
			if v.Inode != 0 {
				r.ID = fmt.Sprintf("%d:%d %d %#x %#x", v.Major, v.Minor, v.Inode, v.Offset, v.Size())
				r.File, r.Offset = fmt.Sprintf("/proc/%d/map_files/%x-%x", pid, v.Start, v.End), v.Offset
			}
			other = append(other, r)
		}
	}
	l.Code = append(l.Code, other...)
	return l
}

// coreEntries builds core-TID.img of every thread of ps; the leader's
// also holds what the process shares (tc).
func coreEntries(ps *procState, xsave cpu.Layout, sc *seccomp.Table, ids *idmap.Pair) ([]*criucore.CoreEntry, error) {
	lims, err := rlimit.Dump(ps.pid)
	if err != nil {
		return nil, err
	}
	pers, err := personality(ps.pid)
	if err != nil {
		return nil, err
	}
	stop := ps.stopSignal()
	if stop != 0 {
		ps.shared = withoutStops(ps.shared, ps.threads[0].mask)
		for _, th := range ps.threads {
			th.pending = withoutStops(th.pending, th.mask)
		}
	}
	oom, err := taskattr.ReadOOMScoreAdj(ps.pid)
	if err != nil {
		return nil, err
	}
	loginuid, err := taskattr.ReadLoginuid(ps.pid)
	if err != nil {
		return nil, err
	}
	loginuid = taskattr.InnerLoginuid(loginuid, ids)
	var out []*criucore.CoreEntry
	for i, th := range ps.threads {
		core, err := threadCore(th, xsave, ids)
		if err != nil {
			return nil, fmt.Errorf("thread %d: %w", th.tid, err)
		}
		if i == 0 {
			core.Tc = &criucore.TaskCoreEntry{
				TaskState:   proto.Uint32(taskAlive),
				ExitCode:    proto.Uint32(0),
				Personality: proto.Uint32(pers),
				Flags:       proto.Uint32(ps.stat.Flags),
				BlkSigset:   proto.Uint64(th.mask),
				Comm:        proto.String(ps.stat.Comm),
				Rlimits:     lims,
				Sigactions:  ps.acts,
				SignalsS:    signals.QueueToImage(ps.shared),
				Timers:      ps.timers,
				OomScoreAdj: proto.Int32(oom),
				Loginuid:    loginuid,
			}
			if stop != 0 {
				core.Tc.TaskState, core.Tc.StopSigno = proto.Uint32(taskStopped), proto.Uint32(uint32(stop))
			}
			ps.attrs.ToImage(core.Tc)
		}
		out = append(out, core)
	}
	threads := make([]seccomp.Thread, len(ps.threads))
	tcores := make([]*criucore.ThreadCoreEntry, len(ps.threads))
	for i, th := range ps.threads {
		threads[i], tcores[i] = th.seccomp, out[i].ThreadCore
	}
	sc.AddProcess(threads, tcores)
	return out, nil
}

func threadCore(th *threadState, xsave cpu.Layout, ids *idmap.Pair) (*criucore.CoreEntry, error) {
	regs, _ := compel.ImageRegs(th.regs)
	fp, err := xsave.XSaveToImage(th.xstate)
	if err != nil {
		return nil, fmt.Errorf("xstate: %w", err)
	}
	c := creds.FromStatus(th.status, th.secbits).Inner(ids)
	tcore := &criucore.ThreadCoreEntry{
		SchedNice: proto.Int32(int32(th.stat.Nice)),
		BlkSigset: proto.Uint64(th.mask),
		Sas:       signals.AltStackToImage(th.altStack),
		PdeathSig: proto.Uint32(uint32(th.pdeathSig)),
		Creds:     creds.ToImage(c),
		Comm:      proto.String(th.stat.Comm),
		SignalsP:  signals.QueueToImage(th.pending),
	}
	th.sched.ToImage(tcore)
	if err := robustList(th.tid, tcore); err != nil {
		return nil, err
	}
	if th.rseq.Size != 0 {
		tcore.RseqEntry = &rseqimg.RseqEntry{
			RseqAbiPointer: proto.Uint64(th.rseq.Pointer),
			RseqAbiSize:    proto.Uint32(th.rseq.Size),
			Signature:      proto.Uint32(th.rseq.Signature),
		}
	}
	return &criucore.CoreEntry{
		Mtype: criucore.CoreEntry_X86_64.Enum(),
		ThreadInfo: &corex86.ThreadInfoX86{
			ClearTidAddr: proto.Uint64(th.tidAddr),
			Gpregs:       cpu.GPRegsToImage(&regs),
			Fpregs:       fp,
		},
		ThreadCore: tcore,
	}, nil
}

// zombieCore is the core image of a zombie: how it ended.
func zombieCore(p *frozenProc) *criucore.CoreEntry {
	return &criucore.CoreEntry{
		Mtype: criucore.CoreEntry_X86_64.Enum(),
		Tc: &criucore.TaskCoreEntry{
			TaskState:   proto.Uint32(taskDead),
			ExitCode:    proto.Uint32(uint32(p.stat.ExitCode)),
			Personality: proto.Uint32(0),
			Flags:       proto.Uint32(p.stat.Flags),
			BlkSigset:   proto.Uint64(0),
			Comm:        proto.String(p.stat.Comm),
		},
	}
}

// robustList reads the thread's robust futex list head with
// get_robust_list, which works on another task amber may trace.
func robustList(tid int, th *criucore.ThreadCoreEntry) error {
	var head, size uint64
	_, _, e := unix.Syscall(unix.SYS_GET_ROBUST_LIST, uintptr(tid), uintptrOf(&head), uintptrOf(&size))
	if e != 0 {
		return fmt.Errorf("get_robust_list pid %d: %w", tid, e)
	}
	th.FutexRla, th.FutexRlaLen = proto.Uint64(head), proto.Uint32(uint32(size))
	return nil
}

func personality(pid int) (uint32, error) {
	b, err := proc.ReadFile(fmt.Sprintf("/proc/%d/personality", pid))
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 16, 32)
	if err != nil {
		return 0, fmt.Errorf("/proc/%d/personality: %w", pid, err)
	}
	return uint32(v), nil
}
