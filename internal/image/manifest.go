package image

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// The manifest is amber's record of what a dump wrote: every image file
// of the directory with its size and CRC32C, so that a restore finds a
// damaged, truncated, missing or added image before it creates anything.
// It is a file of amber's own beside CRIU's images (CRIU and crit read
// images by name and ignore it); images without one, such as CRIU's,
// restore unchecked.
//
// amber-manifest.txt is text, one item a line:
//
//	amber-manifest 2
//	# comments start with '#'
//	NAME SIZE CRC32C
//	NAME SIZE CRC32C PIECES
//	...
//	end COUNT CRC32C
//
// The first line names the format and its version. Each NAME line is a
// file of the directory, its size in bytes in decimal and the CRC32C
// (Castagnoli) of its contents in 8 hex digits, sorted by name. A pages
// image's line adds PIECES, the CRC32C of each piece of PieceSize bytes
// of it (the last one shorter) in 8 hex digits, joined by commas: a lazy
// restore checks only the pieces it reads, and the lazy-pages daemon a
// piece before it places a page from it. The last line counts the NAME
// lines and holds the CRC32C of every byte of the file before it, so that
// a truncated or edited manifest is itself found out. Version 1 is the
// same without PIECES; it is still read.

// ManifestName is the manifest's file name in an images directory.
const ManifestName = "amber-manifest.txt"

// manifestHeader is the manifest's first line: format and version;
// manifestHeaderV1 that of manifests without piece sums.
const (
	manifestHeader   = "amber-manifest 2"
	manifestHeaderV1 = "amber-manifest 1"
)

// Manifest lists the files of a dump, sorted by name.
type Manifest struct {
	Files []ManifestFile
}

// ManifestFile is one file of the manifest.
type ManifestFile struct {
	Name string
	Sum
	// Pieces are the CRC32C of each piece of PieceSize bytes, of a pages
	// image of a version 2 manifest; nil if not recorded.
	Pieces []uint32
}

// IsImageName tells whether a file of an images directory is one the
// manifest covers: CRIU's images (NAME.img) and amber's own side files
// (amber-NAME.txt), but not the manifest itself, logs or anything else a
// user keeps there.
func IsImageName(name string) bool {
	if name == ManifestName || !validName(name) {
		return false
	}
	return strings.HasSuffix(name, ".img") || strings.HasPrefix(name, "amber-") && strings.HasSuffix(name, ".txt")
}

// validName tells whether name can stand in the manifest: one file of the
// directory itself, a single word.
func validName(name string) bool {
	if name == "" || name == "." || name == ".." || strings.ContainsRune(name, '/') {
		return false
	}
	return !strings.ContainsFunc(name, func(r rune) bool { return r <= ' ' || r == 0x7f })
}

// Marshal encodes the manifest, sorted by name, with its end line.
func (m *Manifest) Marshal() []byte {
	files := slices.Clone(m.Files)
	slices.SortFunc(files, func(a, b ManifestFile) int { return strings.Compare(a.Name, b.Name) })
	var b bytes.Buffer
	b.WriteString(manifestHeader + "\n")
	b.WriteString("# The image files of this directory as amber's dump wrote them: name, size, CRC32C.\n")
	b.WriteString("# amber restore checks them before it starts; delete this file to restore unchecked.\n")
	for _, f := range files {
		fmt.Fprintf(&b, "%s %d %08x", f.Name, f.Size, f.CRC)
		for i, crc := range f.Pieces {
			fmt.Fprintf(&b, "%c%08x", " ,"[min(i, 1)], crc)
		}
		b.WriteByte('\n')
	}
	fmt.Fprintf(&b, "end %d %08x\n", len(files), Checksum(b.Bytes()))
	return b.Bytes()
}

// ParseManifest decodes a manifest and checks its end line.
func ParseManifest(b []byte) (*Manifest, error) {
	body, end, err := splitEnd(b)
	if err != nil {
		return nil, err
	}
	lines := strings.Split(strings.TrimSuffix(string(body), "\n"), "\n")
	if lines[0] != manifestHeader && lines[0] != manifestHeaderV1 {
		return nil, fmt.Errorf("line 1: %q, want %q", lines[0], manifestHeader)
	}
	withPieces := lines[0] == manifestHeader
	m := &Manifest{}
	seen := map[string]bool{}
	for i, line := range lines[1:] {
		if strings.HasPrefix(line, "#") {
			continue
		}
		f, err := parseManifestLine(line, withPieces)
		if err == nil && seen[f.Name] {
			err = fmt.Errorf("%s listed twice", f.Name)
		}
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", i+2, err)
		}
		seen[f.Name] = true
		m.Files = append(m.Files, f)
	}
	if err := checkEnd(end, len(m.Files), Checksum(body)); err != nil {
		return nil, err
	}
	return m, nil
}

// splitEnd cuts the end line off a manifest.
func splitEnd(b []byte) (body []byte, end string, err error) {
	if len(b) == 0 || b[len(b)-1] != '\n' {
		return nil, "", errors.New("does not end with a newline: truncated")
	}
	i := bytes.LastIndexByte(b[:len(b)-1], '\n') + 1
	end = string(b[i : len(b)-1])
	if i == 0 || !strings.HasPrefix(end, "end ") {
		return nil, "", errors.New("no end line: truncated")
	}
	return b[:i], end, nil
}

// checkEnd checks the end line against the count and CRC32C of the rest.
func checkEnd(end string, count int, crc uint32) error {
	var n int
	var sum uint32
	if _, err := fmt.Sscanf(end, "end %d %08x", &n, &sum); err != nil || end != fmt.Sprintf("end %d %08x", n, sum) {
		return fmt.Errorf("last line %q: want end COUNT CRC32C", end)
	}
	if n != count || sum != crc {
		return fmt.Errorf("last line %q, but the manifest has %d files and CRC32C %08x: damaged",
			end, count, crc)
	}
	return nil
}

// parseManifestLine parses "NAME SIZE CRC32C", or with withPieces also
// "NAME SIZE CRC32C PIECES".
func parseManifestLine(line string, withPieces bool) (ManifestFile, error) {
	w := strings.Split(line, " ")
	if !(len(w) == 3 || len(w) == 4 && withPieces) || !validName(w[0]) {
		return ManifestFile{}, fmt.Errorf("%q: want NAME SIZE CRC32C", line)
	}
	size, err := strconv.ParseInt(w[1], 10, 64)
	if err != nil || size < 0 {
		return ManifestFile{}, fmt.Errorf("%q: size %q", line, w[1])
	}
	crc, err := parseCRC(w[2])
	if err != nil {
		return ManifestFile{}, fmt.Errorf("%q: %w", line, err)
	}
	f := ManifestFile{Name: w[0], Sum: Sum{size, crc}}
	if len(w) == 4 {
		if f.Pieces, err = parsePieces(w[3], f.Sum); err != nil {
			return ManifestFile{}, fmt.Errorf("%s: %w", f.Name, err)
		}
	}
	return f, nil
}

// parseCRC parses a CRC32C of 8 hex digits.
func parseCRC(w string) (uint32, error) {
	crc, err := strconv.ParseUint(w, 16, 32)
	if err != nil || len(w) != 8 {
		return 0, fmt.Errorf("CRC32C %q: want 8 hex digits", w)
	}
	return uint32(crc), nil
}

// parsePieces parses the piece sums of a file whose sum is whole: one
// per piece, which must join into whole.
func parsePieces(w string, whole Sum) ([]uint32, error) {
	words := strings.Split(w, ",")
	if len(words) != PieceCount(whole.Size) {
		return nil, fmt.Errorf("%d piece sums for %d bytes, want %d", len(words), whole.Size, PieceCount(whole.Size))
	}
	pieces := make([]uint32, len(words))
	for i, pw := range words {
		crc, err := parseCRC(pw)
		if err != nil {
			return nil, fmt.Errorf("piece %d: %w", i, err)
		}
		pieces[i] = crc
	}
	if got := JoinPieces(whole.Size, pieces); got != whole {
		return nil, fmt.Errorf("piece sums join into CRC32C %08x, but the file's is %08x", got.CRC, whole.CRC)
	}
	return pieces, nil
}
