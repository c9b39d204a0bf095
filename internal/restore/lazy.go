package restore

// Lazy restore (--lazy-pages): each process's private anonymous memory
// is left to the lazy-pages daemon (package lazy), which gets a
// userfaultfd made inside the process.

import (
	"cmp"
	"fmt"
	"slices"

	"golang.org/x/sys/unix"

	"amber/internal/image"
	"amber/internal/lazy"
	"amber/internal/mem"
	"amber/internal/proc"
)

// lazyPages is what a lazy restore leaves to the daemon in a process
// (nil when the restore is not lazy): the pages of its threads' rseq
// areas, which the kernel writes during the restore, are filled all
// the same.
func lazyPages(t *taskImages, h *host) *mem.LazyPages {
	if !h.lazy {
		return nil
	}
	l := &mem.LazyPages{}
	for _, th := range t.threads {
		if a := th.core.GetThreadCore().GetRseqEntry().GetRseqAbiPointer(); a != 0 {
			l.Eager = append(l.Eager, a)
		}
	}
	return l
}

// handOver makes a userfaultfd in process p, registers its lazy memory
// and hands it to the daemon, before the threads' own sections run:
// from then on, a fault there, the kernel's own writes included, waits
// for the daemon.
func (r *restorer) handOver(p *process) error {
	l := p.plan.lazy
	if l == nil || len(l.Areas) == 0 {
		return nil
	}
	leader, insn := p.threads[0], p.plan.prog.Insn()
	fd, err := leader.SyscallOK(insn, unix.SYS_USERFAULTFD, unix.O_CLOEXEC|unix.O_NONBLOCK)
	if err != nil {
		return fmt.Errorf("lazy pages: userfaultfd: %w", err)
	}
	uffd, err := proc.CopyFd(leader.Pid, int(fd))
	if _, cerr := leader.SyscallOK(insn, unix.SYS_CLOSE, fd); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("lazy pages: %w", err)
	}
	defer unix.Close(uffd)
	if err := lazy.Init(uffd); err != nil {
		return err
	}
	for _, a := range l.Areas {
		if err := lazy.Register(uffd, a.Start, a.End); err != nil {
			return err
		}
	}
	pidfd, err := unix.PidfdOpen(leader.Pid, 0)
	if err != nil {
		return fmt.Errorf("lazy pages: pidfd_open %d: %w", leader.Pid, err)
	}
	defer unix.Close(pidfd)
	// The process's own pages image may be checked in part only: the
	// daemon checks the rest. Parent images were checked whole.
	pieces := [][]uint32{r.tree.pagesCheck.Pieces(p.t.pagesPath.Name())}
	if err := r.lazy.Send(p.t.pid, uffd, pidfd, l, pieces); err != nil {
		return err
	}
	r.opts.Log.Infof("pid %d: %d runs of pages in %d areas left to the lazy-pages daemon", p.t.pid, len(l.Ranges), len(l.Areas))
	return nil
}

// lazySpans are the bytes of each pages image of the directory (by name)
// left to the daemon, which checks them itself: the restore does not
// read them.
func (r *restorer) lazySpans() map[string][]image.Span {
	out := map[string][]image.Span{}
	for _, p := range r.procs {
		l := p.plan.lazy
		if l == nil {
			continue
		}
		name := p.t.pagesPath.Name()
		for _, rg := range l.Ranges {
			if rg.Image == 0 {
				out[name] = append(out[name], image.Span{Off: int64(rg.Off), End: int64(rg.Off + rg.End - rg.Start)})
			}
		}
	}
	for name, spans := range out {
		out[name] = joinSpans(spans)
	}
	return out
}

// joinSpans sorts spans and joins those that touch or overlap.
func joinSpans(spans []image.Span) []image.Span {
	slices.SortFunc(spans, func(a, b image.Span) int { return cmp.Compare(a.Off, b.Off) })
	var out []image.Span
	for _, s := range spans {
		if n := len(out); n > 0 && s.Off <= out[n-1].End {
			out[n-1].End = max(out[n-1].End, s.End)
			continue
		}
		out = append(out, s)
	}
	return out
}
