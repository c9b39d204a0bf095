package dump

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	corex86 "github.com/checkpoint-restore/go-criu/v8/crit/images/core-x86"
	criucore "github.com/checkpoint-restore/go-criu/v8/crit/images/criu-core"
	criusa "github.com/checkpoint-restore/go-criu/v8/crit/images/criu-sa"
	rseqimg "github.com/checkpoint-restore/go-criu/v8/crit/images/rseq"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/compel"
	"amber/internal/cpu"
	"amber/internal/creds"
	"amber/internal/files"
	"amber/internal/mem"
	"amber/internal/proc"
	"amber/internal/rlimit"
	"amber/internal/signals"
)

// taskAlive is CRIU's task_state of a running task.
const taskAlive = 1

// user32CS is the code segment of a 32-bit task, which amber cannot dump.
const user32CS = 0x23

// frozen is what a dump learns of a frozen task before writing images.
type frozen struct {
	pid    int
	stat   proc.Stat
	status proc.Status
	vmas   []proc.VMA
	regs   compel.Regs
	xstate []byte
	mask   uint64
	rseq   compel.RseqConfig
	// Learnt by running system calls inside the task.
	acts      []*criusa.SaEntry
	altStack  signals.AltStack
	brk       uint64
	tidAddr   uint64
	pdeathSig uint64
	secbits   uint64
}

// dumpFrozen collects everything while the task is frozen and writes the
// images. The task is unchanged afterwards.
func (d *dumper) dumpFrozen(t *compel.Task) error {
	f, err := d.collect(t)
	if err != nil {
		return err
	}
	core, err := d.coreEntry(f)
	if err != nil {
		return err
	}
	mm, err := d.mmEntry(f)
	if err != nil {
		return err
	}
	fds, err := files.DumpFds(f.pid, d.files, files.DumpOptions{ShellJob: d.opts.ShellJob})
	if err != nil {
		return err
	}
	fsEntry, err := files.DumpFS(f.pid, d.files, f.status.Umask)
	if err != nil {
		return fmt.Errorf("fs: %w", err)
	}
	if err := d.writeImages(f, core, mm, fds, fsEntry); err != nil {
		return err
	}
	st, err := mem.DumpPages(t, mm.GetVmas(), d.dir, f.pid, pagesID)
	if err != nil {
		return fmt.Errorf("memory: %w", err)
	}
	d.log.Infof("Dumped %d pages of %d in private mappings", st.Pages, st.Scanned)
	return nil
}

// collect reads /proc and the registers, then infects the task for what
// only the task itself can say.
func (d *dumper) collect(t *compel.Task) (*frozen, error) {
	f := &frozen{pid: t.Pid}
	var err error
	if f.stat, err = proc.ReadStat(t.Pid); err != nil {
		return nil, err
	}
	if f.status, err = proc.ReadStatus(t.Pid); err != nil {
		return nil, err
	}
	if f.vmas, err = proc.ReadSmaps(t.Pid); err != nil {
		return nil, err
	}
	if f.regs, err = t.Regs(); err != nil {
		return nil, err
	}
	if f.regs.Cs == user32CS {
		return nil, fmt.Errorf("32-bit tasks are not supported")
	}
	if f.xstate, err = t.XState(); err != nil {
		return nil, err
	}
	if f.mask, err = t.SigMask(); err != nil {
		return nil, err
	}
	if f.rseq, err = t.Rseq(); err != nil {
		return nil, err
	}
	if err := d.askTask(t, f); err != nil {
		return nil, err
	}
	return f, nil
}

// askTask runs system calls inside the task for state /proc does not show.
func (d *dumper) askTask(t *compel.Task, f *frozen) (err error) {
	p, err := compel.Infect(t, codeRanges(f.vmas))
	if err != nil {
		return err
	}
	defer func() {
		if cerr := p.Cure(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	scratch := p.Scratch
	if f.acts, err = signals.DumpActions(p, scratch); err != nil {
		return err
	}
	if f.altStack, err = signals.DumpAltStack(p, scratch); err != nil {
		return err
	}
	if f.brk, err = p.Syscall(unix.SYS_BRK, 0); err != nil {
		return fmt.Errorf("brk: %w", err)
	}
	if f.tidAddr, err = prctlGet(p, unix.PR_GET_TID_ADDRESS, scratch); err != nil {
		return fmt.Errorf("clear-child-tid address: %w", err)
	}
	if f.pdeathSig, err = prctlGet(p, unix.PR_GET_PDEATHSIG, scratch); err != nil {
		return fmt.Errorf("parent death signal: %w", err)
	}
	if f.secbits, err = p.Syscall(unix.SYS_PRCTL, unix.PR_GET_SECUREBITS); err != nil {
		return fmt.Errorf("securebits: %w", err)
	}
	return nil
}

// prctlGet runs a prctl that stores its answer at a pointer and reads it.
func prctlGet(p *compel.Parasite, op int, scratch uint64) (uint64, error) {
	if _, err := p.Syscall(unix.SYS_PRCTL, uint64(op), scratch); err != nil {
		return 0, err
	}
	buf := make([]byte, 8)
	if err := p.Read(scratch, buf); err != nil {
		return 0, err
	}
	v := uint64(0)
	for i := 7; i >= 0; i-- {
		v = v<<8 | uint64(buf[i])
	}
	if op == unix.PR_GET_PDEATHSIG {
		v &= 0xffffffff // an int
	}
	return v, nil
}

// codeRanges lists where to look for a syscall instruction: the vdso
// first, then every executable mapping.
func codeRanges(vmas []proc.VMA) []compel.Range {
	var vdso, other []compel.Range
	for _, v := range vmas {
		switch {
		case v.Path == "[vdso]":
			vdso = append(vdso, compel.Range{Start: v.Start, End: v.End})
		case v.Prot&unix.PROT_EXEC != 0 && v.Path != "[vsyscall]":
			other = append(other, compel.Range{Start: v.Start, End: v.End})
		}
	}
	return append(vdso, other...)
}

func (d *dumper) coreEntry(f *frozen) (*criucore.CoreEntry, error) {
	fp, err := cpu.HostLayout().XSaveToImage(f.xstate)
	if err != nil {
		return nil, fmt.Errorf("xstate: %w", err)
	}
	lims, err := rlimit.Dump(f.pid)
	if err != nil {
		return nil, err
	}
	pers, err := personality(f.pid)
	if err != nil {
		return nil, err
	}
	c := creds.Creds{
		Uid: f.status.Uid, Gid: f.status.Gid, Groups: f.status.Groups,
		CapInh: f.status.CapInh, CapPrm: f.status.CapPrm, CapEff: f.status.CapEff,
		CapBnd: f.status.CapBnd, CapAmb: f.status.CapAmb,
		Secbits: uint32(f.secbits), NoNewPrivs: f.status.NoNewPrivs != 0,
	}
	tc := &criucore.TaskCoreEntry{
		TaskState:   proto.Uint32(taskAlive),
		ExitCode:    proto.Uint32(0),
		Personality: proto.Uint32(pers),
		Flags:       proto.Uint32(f.stat.Flags),
		BlkSigset:   proto.Uint64(f.mask),
		Comm:        proto.String(f.stat.Comm),
		Rlimits:     lims,
		Sigactions:  f.acts,
	}
	thread := &criucore.ThreadCoreEntry{
		FutexRla:    proto.Uint64(0),
		FutexRlaLen: proto.Uint32(0),
		SchedNice:   proto.Int32(int32(f.stat.Nice)),
		BlkSigset:   proto.Uint64(f.mask),
		Sas:         signals.AltStackToImage(f.altStack),
		PdeathSig:   proto.Uint32(uint32(f.pdeathSig)),
		Creds:       creds.ToImage(c),
		Comm:        proto.String(f.stat.Comm),
	}
	if err := robustList(f.pid, thread); err != nil {
		return nil, err
	}
	if f.rseq.Size != 0 {
		thread.RseqEntry = &rseqimg.RseqEntry{
			RseqAbiPointer: proto.Uint64(f.rseq.Pointer),
			RseqAbiSize:    proto.Uint32(f.rseq.Size),
			Signature:      proto.Uint32(f.rseq.Signature),
		}
	}
	return &criucore.CoreEntry{
		Mtype: criucore.CoreEntry_X86_64.Enum(),
		ThreadInfo: &corex86.ThreadInfoX86{
			ClearTidAddr: proto.Uint64(f.tidAddr),
			Gpregs:       cpu.GPRegsToImage(&f.regs),
			Fpregs:       fp,
		},
		Tc:         tc,
		ThreadCore: thread,
	}, nil
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
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/personality", pid))
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 16, 32)
	if err != nil {
		return 0, fmt.Errorf("/proc/%d/personality: %w", pid, err)
	}
	return uint32(v), nil
}
