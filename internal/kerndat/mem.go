package kerndat

import (
	"encoding/binary"
	"fmt"
	"os"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// pagemapScan is the PAGEMAP_SCAN ioctl on /proc/PID/pagemap:
// _IOWR('f', 16, struct pm_scan_arg), a 96-byte argument.
const pagemapScan = 0xc0606610

// PAGE_IS_* categories of PAGEMAP_SCAN.
const pageIsPresent = 1 << 3

// Bits of a /proc/PID/pagemap entry.
const (
	pmPresent   = 1 << 63
	pmSoftDirty = 1 << 55
)

// pmScanArg is struct pm_scan_arg.
type pmScanArg struct {
	Size, Flags, Start, End, WalkEnd, Vec, VecLen, MaxPages uint64
	CategoryInverted, CategoryMask, CategoryAnyofMask       uint64
	ReturnMask                                              uint64
}

// pageRegion is struct page_region.
type pageRegion struct{ Start, End, Categories uint64 }

// probePagemapScan asks PAGEMAP_SCAN whether a page this process just wrote
// is present. Kernels without the ioctl answer ENOTTY (older ones EINVAL).
func probePagemapScan() Status {
	page, err := touchedPage()
	if err != nil {
		return missing("%w", err)
	}
	defer unix.Munmap(page)
	if err := scanOnePage(page, pageIsPresent); err != nil {
		return missing("%w", err)
	}
	return present()
}

// ProbeSoftDirty clears the soft-dirty bits of this process, writes a
// page and reads its pagemap entry: without CONFIG_MEM_SOFT_DIRTY the bit
// stays clear. A dump that tracks memory on a kernel without
// asynchronous userfaultfd write protection probes it alone.
func ProbeSoftDirty() Status {
	page, err := touchedPage()
	if err != nil {
		return missing("%w", err)
	}
	defer unix.Munmap(page)
	if err := os.WriteFile("/proc/self/clear_refs", []byte("4"), 0); err != nil {
		return missing("clear soft-dirty bits: %w", err)
	}
	page[0]++
	entry, err := pagemapEntry(uintptr(unsafe.Pointer(&page[0])))
	if err != nil {
		return missing("%w", err)
	}
	if entry&pmPresent == 0 {
		return missing("pagemap: a written page is not present")
	}
	if entry&pmSoftDirty == 0 {
		return missing("pagemap: written page has no soft-dirty bit (no CONFIG_MEM_SOFT_DIRTY)")
	}
	return present()
}

// pagemapEntry reads this process's /proc/self/pagemap entry for addr.
func pagemapEntry(addr uintptr) (uint64, error) {
	f, err := os.Open("/proc/self/pagemap")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var b [8]byte
	off := int64(addr/uintptr(os.Getpagesize())) * 8
	if _, err := f.ReadAt(b[:], off); err != nil {
		return 0, fmt.Errorf("read /proc/self/pagemap at %#x: %w", off, err)
	}
	return binary.LittleEndian.Uint64(b[:]), nil
}

// touchedPage maps one private anonymous page and writes to it.
func touchedPage() ([]byte, error) {
	page, err := unix.Mmap(-1, 0, os.Getpagesize(), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, fmt.Errorf("mmap a probe page: %w", err)
	}
	page[0] = 1
	return page, nil
}

// probeMapFiles resolves one link of /proc/self/map_files, which needs
// CAP_CHECKPOINT_RESTORE or CAP_SYS_ADMIN.
func probeMapFiles() Status {
	const dir = "/proc/self/map_files"
	ents, err := os.ReadDir(dir)
	if err != nil {
		return missing("%w", err)
	}
	if len(ents) == 0 {
		return missing("%s is empty", dir)
	}
	if _, err := os.Readlink(dir + "/" + ents[0].Name()); err != nil {
		return missing("%w", err)
	}
	return present()
}

// ProbePopulateWrite asks madvise(MADV_POPULATE_WRITE) (Linux 5.14) to
// fault in a page of a mapping of this process's own: older kernels
// answer EINVAL. A restore probes it alone, being cheap, rather than
// through Probe.
func ProbePopulateWrite() Status {
	b, err := unix.Mmap(-1, 0, os.Getpagesize(), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return missing("mmap: %v", err)
	}
	defer unix.Munmap(b)
	if err := unix.Madvise(b, unix.MADV_POPULATE_WRITE); err != nil {
		return missing("madvise(MADV_POPULATE_WRITE): %v", err)
	}
	return present()
}

// pageIsGuard is PAGE_IS_GUARD of PAGEMAP_SCAN (Linux 6.14).
const pageIsGuard = 1 << 8

// madvGuardInstall is MADV_GUARD_INSTALL (Linux 6.13).
const madvGuardInstall = 102

// probeGuardPages makes a page of its own a guard page and asks
// PAGEMAP_SCAN for guard pages: a dump finds guard pages that way, and a
// restore installs them again with MADV_GUARD_INSTALL.
func probeGuardPages() Status {
	page, err := touchedPage()
	if err != nil {
		return missing("%w", err)
	}
	defer unix.Munmap(page)
	if err := unix.Madvise(page, madvGuardInstall); err != nil {
		return missing("madvise(MADV_GUARD_INSTALL): %w", err)
	}
	if err := scanOnePage(page, pageIsGuard); err != nil {
		return missing("for PAGE_IS_GUARD: %w", err)
	}
	return present()
}

// scanOnePage asks PAGEMAP_SCAN whether page, one page of this process,
// is in category (PAGE_IS_*).
func scanOnePage(page []byte, category uint64) error {
	f, err := os.Open("/proc/self/pagemap")
	if err != nil {
		return err
	}
	defer f.Close()
	var region [1]pageRegion
	var pin runtime.Pinner
	pin.Pin(&region[0])
	defer pin.Unpin()
	start := uint64(uintptr(unsafe.Pointer(&page[0])))
	arg := pmScanArg{
		Size:              uint64(unsafe.Sizeof(pmScanArg{})),
		Start:             start,
		End:               start + uint64(len(page)),
		Vec:               uint64(uintptr(unsafe.Pointer(&region[0]))),
		VecLen:            1,
		CategoryAnyofMask: category,
		ReturnMask:        category,
	}
	n, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), pagemapScan, uintptr(unsafe.Pointer(&arg)))
	runtime.KeepAlive(page)
	if errno != 0 {
		return fmt.Errorf("ioctl(PAGEMAP_SCAN): %w", errno)
	}
	if n != 1 || region[0].Start != start || region[0].Categories&category == 0 {
		return fmt.Errorf("ioctl(PAGEMAP_SCAN): the page is not reported in category %#x (%d regions)", category, n)
	}
	return nil
}
