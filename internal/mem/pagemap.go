package mem

// Scanning without PAGEMAP_SCAN. Kernels before 6.7 (Debian 12's 6.1,
// Ubuntu 22.04's 5.15, RHEL 9's 5.14) have no PAGEMAP_SCAN ioctl: there
// a scan reads the /proc/PID/pagemap entry of every page of its range
// and gives each the categories the ioctl would, as the kernel tells
// them (linux/fs/proc/task_mmu.c): present, swapped, file (a page of a
// file or of shared memory, not an anonymous copy), the zero page,
// soft-dirty, and, where the kernel has guard pages, guard. It is
// slower (8 bytes read per page, where the ioctl returns one region per
// run) but finds the same pages.

import (
	"encoding/binary"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Bits of a /proc/PID/pagemap entry (linux/fs/proc/task_mmu.c), beside
// pmPresent, pmSwap and pmExclusive.
const (
	pmFile      = 1 << 61 // a page of a file or of shared memory
	pmGuard     = 1 << 58 // a guard page (MADV_GUARD_INSTALL, Linux 6.15)
	pmSoftDirty = 1 << 55 // written since the soft-dirty bits were cleared
)

// scanEntries is scan for kernels without PAGEMAP_SCAN: it reads the
// pagemap entries of [start, end) a chunk at a time and returns the
// regions q asks for as the ioctl would, adjacent pages of the same
// reported categories merged. It refuses the flags that write protect
// pages, which only the ioctl can do.
func (s *Scanner) scanEntries(start, end uint64, q scanQuery) ([]pageRegion, error) {
	if q.flags != 0 {
		return nil, fmt.Errorf("%s: scan flags %#x need PAGEMAP_SCAN (Linux 6.7)", s.f.Name(), q.flags)
	}
	var out []pageRegion
	for at := start; at < end; {
		s.pm = growPagemapBuf(s.pm, (end-at)/pageSize)
		b := s.pm[:min((end-at)/pageSize, pagemapChunk)*8]
		if err := readPagemap(s.f, at, b); err != nil {
			return nil, err
		}
		for i := 0; i < len(b); i += 8 {
			cat := s.entryCategories(binary.LittleEndian.Uint64(b[i:]))
			if !q.matches(cat) {
				continue
			}
			a := at + uint64(i/8)*pageSize
			cat &= q.ret
			if n := len(out); n > 0 && out[n-1].End == a && out[n-1].Categories == cat {
				out[n-1].End += pageSize
				continue
			}
			out = append(out, pageRegion{a, a + pageSize, cat})
		}
		at += uint64(len(b)/8) * pageSize
	}
	return out, nil
}

// entryCategories are the PAGEMAP_SCAN categories of a page whose
// pagemap entry is e.
func (s *Scanner) entryCategories(e uint64) uint64 {
	var cat uint64
	if e&pmPresent != 0 {
		cat |= pageIsPresent
		if pfn := e & pmPfnMask; pfn != 0 && pfn == s.zeroPFN {
			cat |= pageIsPfnZero
		}
	}
	if e&pmSwap != 0 {
		cat |= pageIsSwapped
	}
	if e&pmFile != 0 {
		cat |= pageIsFile
	}
	if e&pmGuard != 0 {
		cat |= pageIsGuard
	}
	if e&pmSoftDirty != 0 {
		cat |= pageIsSoftDirty
	}
	return cat
}

// matches tells whether a page of categories cat is one q asks for, as
// the kernel decides it (pagemap_scan_is_interesting_page).
func (q scanQuery) matches(cat uint64) bool {
	cat ^= q.inverted
	if cat&q.mask != q.mask {
		return false
	}
	return q.anyof == 0 || cat&q.anyof != 0
}

// zeroPagePFN returns the page frame of the kernel's shared zero page,
// which a private anonymous page only read maps: 0 if pagemap hides page
// frames (without CAP_SYS_ADMIN), and then no page counts as the zero
// page (it is saved as data, zeroes, which restores the same).
func zeroPagePFN() (uint64, error) {
	m, err := unix.Mmap(-1, 0, pageSize, unix.PROT_READ, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return 0, fmt.Errorf("find the zero page: %w", err)
	}
	defer unix.Munmap(m)
	if m[0] != 0 { // the read maps the zero page
		return 0, fmt.Errorf("find the zero page: fresh memory reads %#x", m[0])
	}
	f, err := os.Open("/proc/self/pagemap")
	if err != nil {
		return 0, fmt.Errorf("find the zero page: %w", err)
	}
	defer f.Close()
	b := make([]byte, 8)
	if err := readPagemap(f, uint64(uintptr(unsafe.Pointer(&m[0]))), b); err != nil {
		return 0, fmt.Errorf("find the zero page: %w", err)
	}
	if e := binary.LittleEndian.Uint64(b); e&pmPresent != 0 {
		return e & pmPfnMask, nil
	}
	return 0, nil
}
