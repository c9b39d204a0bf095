// Package show decodes checkpoint images to JSON for `amber show`, the
// way `crit show` does: go-criu's crit decodes, after amber's image reader
// has checked the framing (so that a corrupted length is reported, not
// allocated), and a panic inside go-criu becomes an error naming the file.
package show

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/checkpoint-restore/go-criu/v8/crit"
	"github.com/checkpoint-restore/go-criu/v8/magic"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"

	"amber/internal/image"
)

// indent is crit's JSON indentation.
const indent = "    "

// Path writes the JSON of the image file at path, or of every image in
// the directory at path.
func Path(w io.Writer, path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	if st.IsDir() {
		return Dir(w, path)
	}
	return File(w, path)
}

// File writes the JSON of one image: {"magic": KIND, "entries": [...]},
// or, for a raw image, what it is and its size (rawImage).
func File(w io.Writer, path string) error {
	var img any
	var err error
	if isRaw(filepath.Base(path)) {
		img, err = raw(path)
	} else {
		img, err = decodeForJSON(path)
	}
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(img, "", indent)
	if err != nil {
		return fmt.Errorf("%s: to JSON: %w", path, err)
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// Dir writes one JSON object with a member per *.img file of dir, in name
// order. Raw images (pages-*.img and CRIU's other raw ones) appear as a
// rawImage; an image that cannot be decoded as {"error": MESSAGE},
// and Dir then returns the errors once everything is written.
func Dir(w io.Writer, dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var errs []error
	sep := "{\n"
	for _, e := range ents {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".img") {
			continue
		}
		v, err := dirMember(filepath.Join(dir, e.Name()))
		if err != nil {
			errs = append(errs, err)
			v = map[string]string{"error": err.Error()}
		}
		if err := writeMember(w, sep, e.Name(), v); err != nil {
			return err
		}
		sep = ",\n"
	}
	if sep == "{\n" {
		return fmt.Errorf("%s: no *.img files", dir)
	}
	if _, err := io.WriteString(w, "\n}\n"); err != nil {
		return err
	}
	return errors.Join(errs...)
}

func dirMember(path string) (any, error) {
	if !isRaw(filepath.Base(path)) {
		return decodeForJSON(path)
	}
	return raw(path)
}

// jsonImage is a decoded image as amber shows it: go-criu's, but with
// each entry marshalled by jsonEntry.
type jsonImage struct {
	Magic   string      `json:"magic"`
	Entries []jsonEntry `json:"entries"`
}

// jsonEntry is an entry and what follows it in the file (CRIU's "extra":
// a TCP connection's queued bytes, a pipe's data, a count). go-criu
// v8.3.0's own MarshalJSON pastes the extra between quotes unescaped,
// which is not JSON when the extra is itself a JSON object (tcp-stream
// images): here an extra that is JSON is kept as such, anything else
// becomes a JSON string.
type jsonEntry struct{ *crit.CriuEntry }

// MarshalJSON writes the entry as crit does: its fields, then "extra".
func (e jsonEntry) MarshalJSON() ([]byte, error) {
	extra := json.RawMessage(nil)
	if e.Extra != "" {
		if json.Valid([]byte(e.Extra)) && strings.HasPrefix(strings.TrimSpace(e.Extra), "{") {
			extra = json.RawMessage(e.Extra)
		} else {
			b, err := json.Marshal(e.Extra)
			if err != nil {
				return nil, err
			}
			extra = b
		}
	}
	if e.Message == nil {
		return json.Marshal(map[string]json.RawMessage{"count": extra})
	}
	fields, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(e.Message)
	if err != nil {
		return nil, err
	}
	if extra == nil {
		return fields, nil
	}
	// The fields in their order, then "extra", as crit writes them.
	fields = bytes.TrimSpace(fields)
	body := bytes.TrimSpace(fields[1 : len(fields)-1])
	out := append([]byte("{"), body...)
	if len(body) > 0 {
		out = append(out, ',')
	}
	out = append(append(append(out, `"extra":`...), extra...), '}')
	return out, nil
}

// decodeForJSON decodes the image at path for showing it.
func decodeForJSON(path string) (*jsonImage, error) {
	img, err := Decode(path)
	if err != nil {
		return nil, err
	}
	out := &jsonImage{Magic: img.Magic}
	for _, e := range img.Entries {
		out.Entries = append(out.Entries, jsonEntry{e})
	}
	return out, nil
}

// rawImage is how a raw image shows: it has no magic and no entries to
// decode, only bytes (for pages-*.img, pages in the order of the pagemap
// image that names it).
type rawImage struct {
	Raw   string `json:"raw"`
	Size  int64  `json:"size"`
	Pages *int64 `json:"pages,omitempty"`
}

// raw describes the raw image at path.
func raw(path string) (*rawImage, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !strings.HasPrefix(filepath.Base(path), "pages-") {
		return &rawImage{Raw: "raw data, without a magic", Size: st.Size()}, nil
	}
	pages := st.Size() / pageSize
	return &rawImage{Raw: "page data: pages-*.img have no magic, only the pages their pagemap image lists",
		Size: st.Size(), Pages: &pages}, nil
}

// pageSize is the size of the pages in a pages image.
const pageSize = 4096

func writeMember(w io.Writer, sep, name string, v any) error {
	b, err := json.MarshalIndent(v, indent, indent)
	if err != nil {
		return fmt.Errorf("%s: to JSON: %w", name, err)
	}
	key, _ := json.Marshal(name)
	_, err = fmt.Fprintf(w, "%s%s%s: %s", sep, indent, key, b)
	return err
}

// isRaw says whether an image file name is one of CRIU's raw images, with
// no magic and no protobuf entries.
func isRaw(name string) bool {
	for _, p := range []string{"pages-", "ifaddr-", "route-", "route6-", "rule-", "iptables-", "ip6tables-", "nftables-", "tmpfs-"} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// Decode reads the image at path with go-criu's crit. Every error names
// the file.
func Decode(path string) (img *crit.CriuImage, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	defer func() {
		if r := recover(); r != nil {
			img, err = nil, fmt.Errorf("%s: malformed image: go-criu panicked: %v", path, r)
		}
	}()
	kind, err := readKind(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	typ, ok := entryType(kind.Name)
	if !ok {
		return nil, fmt.Errorf("%s: no decoder for %s images", path, kind.Name)
	}
	if err := checkFraming(f, path, kind, typ); err != nil {
		return nil, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	img, err = crit.New(f, nil, "", false, false).Decode(typ)
	if err != nil {
		return nil, fmt.Errorf("%s: decode %s: %w", path, kind.Name, err)
	}
	return img, nil
}

// readKind reads the magic at the start of f: IMG_COMMON or IMG_SERVICE
// then the kind's magic, or the kind's magic alone (inventory).
func readKind(f *os.File) (image.Kind, error) {
	var hdr [8]byte
	n, err := io.ReadFull(f, hdr[:])
	if n < 4 {
		return image.Kind{}, fmt.Errorf("read magic: %w", noEOF(err))
	}
	names := magic.LoadMagic().ByValue
	first := binary.LittleEndian.Uint32(hdr[:4])
	if first != image.MagicCommon && first != image.MagicService {
		return namedKind(names, first, 0)
	}
	if n < 8 {
		return image.Kind{}, fmt.Errorf("read magic: %w", io.ErrUnexpectedEOF)
	}
	return namedKind(names, binary.LittleEndian.Uint32(hdr[4:]), first)
}

func namedKind(names map[uint64]string, m, prefix uint32) (image.Kind, error) {
	name, ok := names[uint64(m)]
	if !ok {
		return image.Kind{}, fmt.Errorf("unknown magic %#x", m)
	}
	return image.Kind{Name: name, Magic: m, Prefix: prefix}, nil
}

// checkFraming reads every entry with amber's reader, which bounds and
// checks each length, before crit (which trusts them) sees the file.
// Kinds with raw data after their entries cannot be walked this way and
// are left to crit alone.
func checkFraming(f *os.File, path string, kind image.Kind, typ proto.Message) error {
	if hasTrailingData(kind.Name) {
		return nil
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	r, err := image.NewReader(f, path, kind)
	if err != nil {
		return err
	}
	for {
		err := r.Next(newEntry(typ))
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// newEntry returns an empty message of typ's type, or one that accepts any
// well-formed protobuf when the kind mixes types (typ nil).
func newEntry(typ proto.Message) proto.Message {
	if typ == nil {
		return &emptypb.Empty{}
	}
	return typ.ProtoReflect().New().Interface()
}

// hasTrailingData says whether entries of the kind are followed by raw
// bytes (pipe contents, socket queues, ...), as crit's special decoders
// expect.
func hasTrailingData(name string) bool {
	switch name {
	case "PIPES_DATA", "FIFO_DATA", "SK_QUEUES", "TCP_STREAM", "BPFMAP_DATA",
		"IPCNS_SEM", "IPCNS_SHM", "IPCNS_MSG", "GHOST_FILE":
		return true
	}
	return false
}

func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
