package tarfs

// Sparse files, in GNU's PAX sparse format 1.0 (what GNU tar --sparse
// --format=posix writes): a PAX header names the file and its real size,
// the entry's data starts with the map of the fragments that hold data
// (decimal numbers, one a line, padded to a block), then those
// fragments. archive/tar reads the format but does not write it: the
// PAX header is written here, raw, before the entry's own USTAR header.

import (
	"archive/tar"
	"errors"
	"fmt"
	"maps"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// blockSize is tar's unit: headers and the padding of data.
const blockSize = 512

// Largest values of USTAR's numeric fields (octal digits): an entry
// whose owners or size do not fit is archived whole instead of sparse.
const (
	maxUSTARID   = 0o7777777
	maxUSTARSize = 0o77777777777
)

// fragment is a part of a file that holds data.
type fragment struct{ off, length int64 }

// dataFragments lists the parts of the file open at fd (st its status)
// that hold data, or nil if it has no hole. A file that ends in a hole
// ends its list with an empty fragment at its end, as GNU tar's does:
// tar extends the file up to there.
func dataFragments(fd int, st *unix.Stat_t) ([]fragment, error) {
	if st.Blocks*512 >= st.Size {
		return nil, nil // every byte has its block
	}
	var frags []fragment
	for off := int64(0); off < st.Size; {
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // a hole up to the end
		}
		if err != nil {
			return nil, fmt.Errorf("find data from %d: %w", off, err)
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil {
			return nil, fmt.Errorf("find a hole from %d: %w", data, err)
		}
		hole = min(hole, st.Size)
		if data >= hole {
			break // grew since stat'ed: the rest is left out
		}
		frags = append(frags, fragment{data, hole - data})
		off = hole
	}
	if len(frags) == 1 && frags[0] == (fragment{0, st.Size}) {
		return nil, nil
	}
	if len(frags) == 0 || frags[len(frags)-1].off+frags[len(frags)-1].length < st.Size {
		frags = append(frags, fragment{st.Size, 0})
	}
	return frags, nil
}

// sparseMap is the map that starts a sparse entry's data, padded.
func sparseMap(frags []fragment) []byte {
	b := strconv.AppendInt(nil, int64(len(frags)), 10)
	b = append(b, '\n')
	for _, f := range frags {
		b = append(strconv.AppendInt(b, f.off, 10), '\n')
		b = append(strconv.AppendInt(b, f.length, 10), '\n')
	}
	return append(b, make([]byte, padding(len(b)))...)
}

// padding is the number of bytes that complete n to a block.
func padding(n int) int { return -n & (blockSize - 1) }

// sparse archives the file f, whose parts with data are frags, as a
// sparse entry; one whose numbers USTAR cannot hold is archived whole.
func (c *creator) sparse(f *os.File, name string, st *unix.Stat_t, frags []fragment) error {
	m := sparseMap(frags)
	size := int64(len(m))
	for _, fr := range frags {
		size += fr.length
	}
	if size > maxUSTARSize {
		return c.whole(f, name, st)
	}
	if err := c.tw.Flush(); err != nil { // the previous entry's padding
		return fmt.Errorf("%s: %w", name, err)
	}
	if _, err := c.w.Write(paxHeader(sparseRecords(name, st))); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	h := &tar.Header{Typeflag: tar.TypeReg, Name: sparseName(name), Mode: int64(st.Mode & 0o7777), Size: size, Format: tar.FormatUSTAR}
	if st.Uid <= maxUSTARID && st.Gid <= maxUSTARID {
		h.Uid, h.Gid = int(st.Uid), int(st.Gid)
	}
	if sec := st.Mtim.Sec; sec > 0 {
		h.ModTime = time.Unix(sec, 0) // the PAX record has it whole
	}
	if err := c.tw.WriteHeader(h); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if _, err := c.tw.Write(m); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	for _, fr := range frags {
		if err := c.copy(f, fr.off, fr.length); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return nil
}

// sparseRecords are the PAX records of a sparse entry: GNU's, and those
// of the file's status that the USTAR header cannot hold exactly.
func sparseRecords(name string, st *unix.Stat_t) map[string]string {
	return map[string]string{
		"GNU.sparse.major":    "1",
		"GNU.sparse.minor":    "0",
		"GNU.sparse.name":     name,
		"GNU.sparse.realsize": strconv.FormatInt(st.Size, 10),
		"uid":                 strconv.FormatUint(uint64(st.Uid), 10),
		"gid":                 strconv.FormatUint(uint64(st.Gid), 10),
		"mtime":               paxTime(st.Mtim),
		"atime":               paxTime(st.Atim),
		"ctime":               paxTime(st.Ctim),
	}
}

// sparseName is the name in a sparse entry's USTAR header, which GNU
// tar's GNU.sparse.name replaces: GNU's dir/GNUSparseFile.N/file where
// it fits, so that a tar that knows no sparse format still keeps the
// data apart.
func sparseName(name string) string {
	dir, file := path.Split(strings.TrimSuffix(name, "/"))
	n := dir + "GNUSparseFile.0/" + file
	if len(n) > 100 || !ascii(n) {
		return "./GNUSparseFile.0/file"
	}
	return n
}

// ascii says s is plain ASCII, all USTAR's fields may hold.
func ascii(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == 0 || s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// paxTime formats a time as a PAX record does: seconds, a dot, nanoseconds.
func paxTime(ts unix.Timespec) string {
	sec, nsec := ts.Unix()
	sign := ""
	if sec < 0 {
		sign, sec = "-", -sec
		if nsec != 0 {
			sec, nsec = sec-1, 1e9-nsec
		}
	}
	return fmt.Sprintf("%s%d.%09d", sign, sec, nsec)
}

// paxRecord formats one record: its length in decimal (counting
// itself), a space, key=value and a newline.
func paxRecord(k, v string) string {
	body := " " + k + "=" + v + "\n"
	n := len(body) + len(strconv.Itoa(len(body)))
	if len(strconv.Itoa(n)) != len(strconv.Itoa(len(body))) {
		n++ // the length gained a digit by counting itself
	}
	return strconv.Itoa(n) + body
}

// paxHeader is a PAX extended header ('x') holding records, in sorted
// order, with its data padded to a block.
func paxHeader(records map[string]string) []byte {
	var data []byte
	for _, k := range slices.Sorted(maps.Keys(records)) {
		data = append(data, paxRecord(k, records[k])...)
	}
	b := make([]byte, blockSize, blockSize+len(data)+padding(len(data)))
	copy(b[0:], "./PaxHeaders.0/GNUSparseFile")
	copy(b[100:], "0000644\x00")
	copy(b[108:], "0000000\x00")
	copy(b[116:], "0000000\x00")
	copy(b[124:], fmt.Sprintf("%011o\x00", len(data)))
	copy(b[136:], "00000000000\x00")
	b[156] = tar.TypeXHeader
	copy(b[257:], "ustar\x0000")
	copy(b[148:], "        ") // the checksum counts its own field as spaces
	sum := 0
	for _, x := range b {
		sum += int(x)
	}
	copy(b[148:], fmt.Sprintf("%06o\x00 ", sum))
	b = append(b, data...)
	return append(b, make([]byte, padding(len(data)))...)
}
