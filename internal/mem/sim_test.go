package mem

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"amber/internal/plan"
)

// This file models what a memory plan does to a task: its address space
// (mmap with MAP_FIXED, munmap, mremap, mprotect, madvise), its
// descriptors (openat, close, close_range) and the preadv calls that fill
// memory. It fails like the kernel at the first call the kernel would
// refuse, so a plan can be checked without a process.

// seg is one mapping of the model.
type seg struct {
	start, end uint64
	prot       uint64
	flags      uint64 // MAP_* of the mmap that made it
	what       string // file path, "anon", or the name of a kernel mapping
	off        uint64 // file offset of start
	inherited  bool   // there when the plan started, never remapped
}

func (s seg) String() string {
	return fmt.Sprintf("%x-%x prot %d flags %#x %s+%#x", s.start, s.end, s.prot, s.flags, s.what, s.off)
}

// fill is one range a preadv wrote, with the pages-image offset it read.
type fill struct{ addr, len, off uint64 }

// srcFill is a fill and the pages image it read.
type srcFill struct {
	path string
	fill
}

// callRange is a range of memory a call of the plan acted on.
type callRange struct {
	addr, len uint64
	call      int
}

type memSim struct {
	prog     *plan.Program
	segs     []seg // sorted, disjoint
	fds      map[int]string
	opens    map[string]int // how often each path was opened
	maxFds   int
	fills    []fill
	dropped  []fill   // MADV_DONTNEED ranges (off unused)
	preadvs  []int    // iovec count of each preadv
	calls    []string // syscall names in order
	pagesImg string
	// parentImgs are the pages images of parent layers a plan may read
	// too; srcFills records every fill from any pages image.
	parentImgs map[string]bool
	srcFills   []srcFill
	// populated are the MADV_POPULATE_WRITE ranges, and pageFills
	// every range a preadv wrote (from any pages image, the task's own or
	// a shared memory object's), each with the index of its call.
	populated []callRange
	pageFills []callRange
	at        int    // index of the call running
	mmFields  []byte // the PR_SET_MM_MAP struct
	mmExe     string // the file exe_fd pointed to
	shm       shmSim // shared memory objects (shmem_sim_test.go)
}

func newMemSim(pagesImg string, segs ...seg) *memSim {
	s := &memSim{fds: map[int]string{}, opens: map[string]int{}, pagesImg: pagesImg}
	for _, g := range segs {
		s.insert(g)
	}
	return s
}

func (s *memSim) insert(g seg) {
	s.unmap(g.start, g.end)
	i, _ := slices.BinarySearchFunc(s.segs, g.start, func(x seg, a uint64) int { return cmpU(x.start, a) })
	s.segs = slices.Insert(s.segs, i, g)
}

func cmpU(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// find returns the index of the first mapping ending above addr.
func (s *memSim) find(addr uint64) int {
	i, _ := slices.BinarySearchFunc(s.segs, addr, func(g seg, a uint64) int {
		if g.end <= a {
			return -1
		}
		return 1
	})
	return i
}

// unmap removes [start, end), splitting mappings it cuts.
func (s *memSim) unmap(start, end uint64) {
	i := s.find(start)
	j := i
	var repl []seg
	for ; j < len(s.segs) && s.segs[j].start < end; j++ {
		g := s.segs[j]
		if g.start < start {
			l := g
			l.end = start
			repl = append(repl, l)
		}
		if g.end > end {
			r := g
			r.off += end - g.start
			r.start = end
			repl = append(repl, r)
		}
	}
	s.segs = slices.Replace(s.segs, i, j, repl...)
}

// covered returns the mappings of [start, end) if it is fully mapped.
func (s *memSim) covered(start, end uint64) ([]seg, bool) {
	var out []seg
	at := start
	for i := s.find(start); i < len(s.segs) && at < end; i++ {
		g := s.segs[i]
		if g.start > at {
			return nil, false
		}
		out = append(out, g)
		at = g.end
	}
	return out, at >= end && start < end
}

func (s *memSim) mem(addr, n uint64) ([]byte, error) {
	if addr < s.prog.Base || addr+n > s.prog.Base+uint64(len(s.prog.Image)) {
		return nil, fmt.Errorf("address %#x+%d outside the scratch data: %w", addr, n, unix.EFAULT)
	}
	return s.prog.Image[addr-s.prog.Base : addr-s.prog.Base+n], nil
}

func (s *memSim) lowestFd() int {
	for fd := 0; ; fd++ {
		if _, ok := s.fds[fd]; !ok {
			return fd
		}
	}
}

func (s *memSim) run(p *plan.Program) error {
	s.prog = p
	for i, c := range p.Calls {
		s.calls = append(s.calls, plan.SyscallName(c.Nr))
		s.at = i
		if err := s.call(c); err != nil {
			return fmt.Errorf("call %d %s (%s): %w", i, plan.SyscallName(c.Nr), c.What, err)
		}
	}
	return nil
}

func aligned(v uint64) bool { return v%pageSize == 0 }

func (s *memSim) call(c plan.Call) error {
	a := c.Args
	switch c.Nr {
	case unix.SYS_OPENAT:
		if _, err := s.mem(a[1], 1); err != nil {
			return err
		}
		img := s.prog.Image[a[1]-s.prog.Base:]
		path := string(img[:bytes.IndexByte(img, 0)])
		s.opens[path]++
		s.fds[s.lowestFd()] = s.shm.resolve(s, path)
		s.maxFds = max(s.maxFds, len(s.fds))
	case unix.SYS_CLOSE:
		if _, ok := s.fds[int(a[0])]; !ok {
			return unix.EBADF
		}
		delete(s.fds, int(a[0]))
	case unix.SYS_CLOSE_RANGE:
		for fd := range s.fds {
			if uint64(fd) >= a[0] && uint64(fd) <= a[1] {
				delete(s.fds, fd)
			}
		}
	case unix.SYS_MMAP:
		return s.mmap(a)
	case unix.SYS_MUNMAP:
		if !aligned(a[0]) || a[1] == 0 {
			return unix.EINVAL
		}
		s.unmap(a[0], a[0]+a[1])
	case unix.SYS_MREMAP:
		return s.mremap(a)
	case unix.SYS_MPROTECT:
		segs, ok := s.covered(a[0], a[0]+a[1])
		if !aligned(a[0]) || !ok {
			return unix.ENOMEM
		}
		for _, g := range segs {
			g.off += max(g.start, a[0]) - g.start
			g.start, g.end, g.prot = max(g.start, a[0]), min(g.end, a[0]+a[1]), a[2]
			s.insert(g)
		}
	case unix.SYS_MADVISE:
		if _, ok := s.covered(a[0], a[0]+a[1]); !ok {
			return unix.ENOMEM
		}
		switch a[2] {
		case unix.MADV_DONTNEED:
			s.dropped = append(s.dropped, fill{addr: a[0], len: a[1]})
		case unix.MADV_POPULATE_WRITE:
			return s.populate(a[0], a[1])
		}
	case unix.SYS_PREADV:
		return s.preadv(a)
	case unix.SYS_SHMAT:
		return s.shmat(a)
	case unix.SYS_PRCTL:
		if a[0] == unix.PR_SET_MM && a[1] == unix.PR_SET_MM_MAP {
			b, err := s.mem(a[2], a[3])
			if err != nil {
				return err
			}
			s.mmFields = b
			if exe := binary.LittleEndian.Uint32(b[100:]); exe != ^uint32(0) {
				path, ok := s.fds[int(exe)]
				if !ok {
					return fmt.Errorf("exe_fd %d: %w", exe, unix.EBADF)
				}
				s.mmExe = path
			}
		}
	}
	return nil
}

func (s *memSim) mmap(a [6]uint64) error {
	addr, length, prot, flags, fd, off := a[0], a[1], a[2], a[3], a[4], a[5]
	if flags&unix.MAP_FIXED == 0 || !aligned(addr) || !aligned(off) || length == 0 || addr+length > TaskSize {
		return fmt.Errorf("mmap %#x+%#x flags %#x: %w", addr, length, flags, unix.EINVAL)
	}
	g := seg{start: addr, end: addr + (length+pageSize-1)&^(pageSize-1), prot: prot, flags: flags &^ unix.MAP_FIXED, what: "anon"}
	if unix.MAP_FIXED_NOREPLACE&flags != 0 {
		return fmt.Errorf("MAP_FIXED_NOREPLACE not modelled")
	}
	if flags&(unix.MAP_ANONYMOUS|unix.MAP_SHARED) == unix.MAP_ANONYMOUS|unix.MAP_SHARED {
		g.what = s.shm.create()
	}
	if flags&unix.MAP_ANONYMOUS == 0 {
		path, ok := s.fds[int(fd)]
		if !ok {
			return fmt.Errorf("mmap of fd %d: %w", int(fd), unix.EBADF)
		}
		g.what, g.off = path, off
	}
	s.insert(g)
	return nil
}

// mremap moves a whole mapping (what the vdso moves need).
func (s *memSim) mremap(a [6]uint64) error {
	old, oldSize, newSize, flags, to := a[0], a[1], a[2], a[3], a[4]
	if flags != unix.MREMAP_MAYMOVE|unix.MREMAP_FIXED || oldSize != newSize {
		return fmt.Errorf("mremap flags %#x sizes %#x/%#x not modelled", flags, oldSize, newSize)
	}
	segs, ok := s.covered(old, old+oldSize)
	if !ok || len(segs) != 1 {
		return fmt.Errorf("mremap %#x+%#x: not one mapping: %w", old, oldSize, unix.EFAULT)
	}
	g := segs[0]
	if g.start != old || g.end != old+oldSize {
		return fmt.Errorf("mremap %#x+%#x: part of %v (vdso pieces move whole)", old, oldSize, g)
	}
	s.unmap(old, old+oldSize)
	g.start, g.end, g.inherited = to, to+oldSize, false
	s.insert(g)
	return nil
}

func (s *memSim) preadv(a [6]uint64) error {
	path := s.fds[int(a[0])]
	if path != s.pagesImg && !s.shm.images[path] && !s.parentImgs[path] {
		return fmt.Errorf("preadv from fd %d (%q), not the pages image: %w", a[0], path, unix.EBADF)
	}
	n := a[2]
	if n > maxIov {
		return fmt.Errorf("%d iovecs: %w", n, unix.EINVAL)
	}
	raw, err := s.mem(a[1], 16*n)
	if err != nil {
		return err
	}
	s.preadvs = append(s.preadvs, int(n))
	off := a[3]
	for i := uint64(0); i < n; i++ {
		base, l := binary.LittleEndian.Uint64(raw[16*i:]), binary.LittleEndian.Uint64(raw[16*i+8:])
		segs, ok := s.covered(base, base+l)
		if !ok {
			return fmt.Errorf("iovec %#x+%#x not mapped: %w", base, l, unix.EFAULT)
		}
		for _, g := range segs {
			if g.prot&unix.PROT_WRITE == 0 {
				return fmt.Errorf("iovec %#x+%#x: %v not writable: %w", base, l, g, unix.EFAULT)
			}
		}
		switch {
		case path == s.pagesImg || s.parentImgs[path]:
			if path == s.pagesImg {
				s.fills = append(s.fills, fill{base, l, off})
			}
			s.srcFills = append(s.srcFills, srcFill{path, fill{base, l, off}})
		default:
			s.shm.filled(segs, path, fill{base, l, off})
		}
		s.pageFills = append(s.pageFills, callRange{base, l, s.at})
		off += l
	}
	return nil
}

// populate faults in a range as MADV_POPULATE_WRITE does: every page of
// it mapped (else ENOMEM, checked by the caller) and writable, which a
// write fault needs (else EFAULT).
func (s *memSim) populate(addr, n uint64) error {
	segs, _ := s.covered(addr, addr+n)
	if !aligned(addr) || !aligned(n) {
		return unix.EINVAL
	}
	for _, g := range segs {
		if g.prot&unix.PROT_WRITE == 0 {
			return fmt.Errorf("populate %#x+%#x: %v not writable: %w", addr, n, g, unix.EFAULT)
		}
	}
	s.populated = append(s.populated, callRange{addr, n, s.at})
	return nil
}

func (s *memSim) layout() string {
	var b strings.Builder
	for _, g := range s.segs {
		fmt.Fprintf(&b, "  %v\n", g)
	}
	return b.String()
}
