package proc

import (
	"bytes"
	"cmp"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// VMA is one mapping of /proc/PID/smaps (or maps).
type VMA struct {
	Start, End   uint64
	Prot         int    // unix.PROT_READ|PROT_WRITE|PROT_EXEC from "rwxp"
	Shared       bool   // 's' in the 4th perms char (else 'p' private)
	Offset       uint64 // file offset
	Major, Minor uint32 // device of the mapped file
	Inode        uint64
	// Path is "" for an anonymous mapping; "[heap]", "[stack]", "[vdso]",
	// "[vvar]", "[vvar_vclock]", "[vsyscall]" (or "[anon:NAME]") for
	// special ones; else a file path as the kernel prints it, where a
	// newline in a name reads "\012". A trailing " (deleted)" is stripped
	// and sets Deleted; a file really named "x (deleted)" is
	// indistinguishable, so callers wanting the exact file should open
	// /proc/PID/map_files/START-END.
	Path    string
	Deleted bool
	// VmFlags are the two-letter flags of the smaps "VmFlags:" line
	// ("rd", "wr", "gd", "sh", "mr", ...); nil for maps.
	VmFlags []string
	// Rss and Anonymous are in bytes, from smaps "Rss:" and
	// "Anonymous:"; 0 for maps.
	Rss, Anonymous uint64
	// SharedRss is smaps "Shared_Clean:" plus "Shared_Dirty:": the
	// bytes of pages the VMA maps that are mapped more than once (by
	// other processes, mostly); Swap is "Swap:", the bytes swapped out.
	// Both 0 for maps.
	SharedRss, Swap uint64
	// KernelPageSize is the size in bytes of the pages backing the
	// mapping (smaps "KernelPageSize:"; a huge page size for hugetlb);
	// 0 for maps.
	KernelPageSize uint64
}

// deletedSuffix is what the kernel's d_path appends to an unlinked file.
const deletedSuffix = " (deleted)"

// HasFlag reports whether the two-letter VmFlag f is set (e.g. "gd" growsdown).
func (v VMA) HasFlag(f string) bool { return slices.Contains(v.VmFlags, f) }

// Size returns End-Start.
func (v VMA) Size() uint64 { return v.End - v.Start }

// ParseSmaps parses smaps (or maps) text. Paths may contain spaces. Lines
// that are neither a mapping header nor a "Key: value" line are an error
// naming the line number. Keys amber does not use are skipped, so new
// kernel fields do not break it.
func ParseSmaps(r io.Reader) ([]VMA, error) {
	var vmas []VMA
	err := eachLine(r, func(line string) error {
		if key, val, ok := cutKey(line); ok {
			if len(vmas) == 0 {
				return fmt.Errorf("%q before the first mapping header", key)
			}
			return vmas[len(vmas)-1].setField(key, val)
		}
		v, err := parseVMAHeader(line)
		if err != nil {
			return err
		}
		vmas = append(vmas, v)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return vmas, nil
}

// ReadSmaps reads /proc/PID/smaps.
func ReadSmaps(pid int) ([]VMA, error) {
	return readParsedSize(pidPath(pid, "smaps"), largeRead, ParseSmaps)
}

// ReadMaps reads /proc/PID/maps: the mappings without the fields of
// smaps, which the kernel gathers by walking every page table.
func ReadMaps(pid int) ([]VMA, error) {
	return readParsedAnySize(pidPath(pid, "maps"), ParseSmaps)
}

// ReadMapsNaming reads /proc/PID/maps and parses it only if a line
// names path (nil otherwise): a pass over every process for one kind of
// mapping, rare, then costs a process of 10,000 mappings the kernel's
// text and one search, not the parse.
func ReadMapsNaming(pid int, path string) ([]VMA, error) {
	b, err := os.ReadFile(pidPath(pid, "maps"))
	if err != nil {
		return nil, err
	}
	if !bytes.Contains(b, []byte(" "+path)) {
		return nil, nil
	}
	return ParseSmaps(bytes.NewReader(b))
}

// setField stores the smaps fields amber uses.
func (v *VMA) setField(key, val string) error {
	var err error
	switch key {
	case "Rss":
		v.Rss, err = parseKB(val)
	case "Anonymous":
		v.Anonymous, err = parseKB(val)
	case "Shared_Clean", "Shared_Dirty":
		var n uint64
		n, err = parseKB(val)
		v.SharedRss += n
	case "Swap":
		v.Swap, err = parseKB(val)
	case "KernelPageSize":
		v.KernelPageSize, err = parseKB(val)
	case "VmFlags":
		v.VmFlags = strings.Fields(val)
		if v.VmFlags == nil {
			v.VmFlags = []string{}
		}
	}
	if err != nil {
		return fmt.Errorf("%s: %w", key, err)
	}
	return nil
}

// parseKB parses "1544 kB" into bytes.
func parseKB(val string) (uint64, error) {
	num, unit, _ := strings.Cut(val, " ")
	if strings.TrimSpace(unit) != "kB" {
		return 0, fmt.Errorf("%q: want \"N kB\"", val)
	}
	n, err := strconv.ParseUint(num, 10, 64)
	if err != nil {
		return 0, err
	}
	if n > math.MaxUint64/1024 {
		return 0, fmt.Errorf("%q: overflows bytes", val)
	}
	return n * 1024, nil
}

// parseVMAHeader parses "start-end perms offset major:minor inode [path]".
func parseVMAHeader(line string) (VMA, error) {
	var v VMA
	addr, rest := nextField(line)
	perms, rest := nextField(rest)
	off, rest := nextField(rest)
	dev, rest := nextField(rest)
	ino, rest := nextField(rest)
	if ino == "" {
		return v, fmt.Errorf("%q is neither a mapping header nor a \"Key: value\" line", line)
	}
	err := cmp.Or(v.parseRange(addr), v.parsePerms(perms),
		v.parseOffset(off), v.parseDev(dev), v.parseInode(ino))
	if err != nil {
		return v, fmt.Errorf("mapping header %q: %w", line, err)
	}
	v.Path, v.Deleted = strings.CutSuffix(strings.TrimLeft(rest, " "), deletedSuffix)
	return v, nil
}

// nextField returns the first space-separated word of s and the text after
// the space that ends it. The kernel pads only before the path, so the
// rest is kept verbatim for paths that contain spaces.
func nextField(s string) (field, rest string) {
	s = strings.TrimLeft(s, " ")
	field, rest, _ = strings.Cut(s, " ")
	return field, rest
}

// parseRange parses "start-end" in hex.
func (v *VMA) parseRange(s string) error {
	lo, hi, ok := strings.Cut(s, "-")
	if !ok {
		return fmt.Errorf("address %q: want start-end", s)
	}
	var err1, err2 error
	v.Start, err1 = strconv.ParseUint(lo, 16, 64)
	v.End, err2 = strconv.ParseUint(hi, 16, 64)
	if err := cmp.Or(err1, err2); err != nil {
		return fmt.Errorf("address %q: %w", s, err)
	}
	if v.End < v.Start {
		return fmt.Errorf("address %q: end before start", s)
	}
	return nil
}

// parsePerms parses "rwxp"; '-' clears a bit, 's' or 'p' ends it.
func (v *VMA) parsePerms(s string) error {
	if len(s) != 4 {
		return fmt.Errorf("perms %q: want 4 characters", s)
	}
	for i, bit := range [3]int{unix.PROT_READ, unix.PROT_WRITE, unix.PROT_EXEC} {
		switch s[i] {
		case "rwx"[i]:
			v.Prot |= bit
		case '-':
		default:
			return fmt.Errorf("perms %q: character %d", s, i+1)
		}
	}
	switch s[3] {
	case 's':
		v.Shared = true
	case 'p':
	default:
		return fmt.Errorf("perms %q: want 's' or 'p' last", s)
	}
	return nil
}

// parseOffset parses the hex file offset.
func (v *VMA) parseOffset(s string) (err error) {
	if v.Offset, err = strconv.ParseUint(s, 16, 64); err != nil {
		return fmt.Errorf("offset: %w", err)
	}
	return nil
}

// parseDev parses "major:minor" in hex; either may be wider than 2 digits.
func (v *VMA) parseDev(s string) error {
	maj, min, ok := strings.Cut(s, ":")
	if !ok {
		return fmt.Errorf("device %q: want major:minor", s)
	}
	a, err1 := strconv.ParseUint(maj, 16, 32)
	b, err2 := strconv.ParseUint(min, 16, 32)
	if err := cmp.Or(err1, err2); err != nil {
		return fmt.Errorf("device %q: %w", s, err)
	}
	v.Major, v.Minor = uint32(a), uint32(b)
	return nil
}

// parseInode parses the decimal inode number.
func (v *VMA) parseInode(s string) (err error) {
	if v.Inode, err = strconv.ParseUint(s, 10, 64); err != nil {
		return fmt.Errorf("inode: %w", err)
	}
	return nil
}
