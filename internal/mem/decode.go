package mem

// Decoding the two memory images a process may hold tens of thousands of
// entries in (VMAs in mm.img, pagemap.img entries) by hand: protobuf's
// reflective decoder allocates every optional field of every entry on
// its own and makes decoding 10,000 VMAs cost milliseconds. The hand
// decoders fill go-criu's own types from a few shared allocations and
// give up on anything unusual (a field they do not know, a wire type they
// do not expect, a required field missing), which proto.Unmarshal then
// decodes, or rejects with its own error.

import (
	"fmt"
	"io"
	"slices"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/mm"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/pagemap"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/vma"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"amber/internal/image"
)

// mmVmasField is the field number of MmEntry.vmas.
const mmVmasField = 14

// ReadMM reads the one entry of an mm image.
func ReadMM(p image.Path) (*mm.MmEntry, error) {
	f, err := p.OpenContents()
	if err != nil {
		return nil, err
	}
	defer f.Close()
	path := p.String()
	r, err := image.NewReader(f, path, image.MM)
	if err != nil {
		return nil, err
	}
	var e *mm.MmEntry
	if err := r.NextDecoded(func(b []byte) (err error) { e, err = DecodeMM(b); return err }); err != nil {
		if err == io.EOF {
			return nil, fmt.Errorf("%s: want 1 entry, found 0", path)
		}
		return nil, err
	}
	if err := r.NextDecoded(func([]byte) error { return nil }); err != io.EOF {
		if err == nil {
			err = fmt.Errorf("%s: want 1 entry, found more", path)
		}
		return nil, err
	}
	e.Vmas = withoutVsyscall(e.Vmas)
	return e, nil
}

// withoutVsyscall drops the [vsyscall] VMA that CRIU records (amber
// leaves it out): the kernel maps it in every task, above the user
// address space, and CRIU's restore skips it too (it is not
// VMA_AREA_REGULAR).
func withoutVsyscall(vmas []*vma.VmaEntry) []*vma.VmaEntry {
	return slices.DeleteFunc(vmas, func(v *vma.VmaEntry) bool { return v.GetStatus()&StatusVsyscall != 0 })
}

// DecodeMM decodes an encoded MmEntry: its VMAs by hand, the rest with
// proto.Unmarshal.
func DecodeMM(b []byte) (*mm.MmEntry, error) {
	n := 0
	if !eachField(b, func(f field) {
		if f.isVMA() {
			n++
		}
	}) {
		return decodeMMSlow(b)
	}
	vmas := make([][]byte, 0, n)
	var rest []byte
	eachField(b, func(f field) {
		if f.isVMA() {
			v, _ := protowire.ConsumeBytes(f.value)
			vmas = append(vmas, v)
		} else {
			rest = append(rest, f.whole...)
		}
	})
	e := new(mm.MmEntry)
	if err := proto.Unmarshal(rest, e); err != nil {
		return nil, fmt.Errorf("decode %T: %w", e, err)
	}
	var ok bool
	if e.Vmas, ok = decodeVMAs(vmas); !ok {
		return decodeMMSlow(b)
	}
	return e, nil
}

// field is one field of an encoded message.
type field struct {
	num   protowire.Number
	typ   protowire.Type
	value []byte // after the tag
	whole []byte // tag and value
}

func (f field) isVMA() bool { return f.num == mmVmasField && f.typ == protowire.BytesType }

// eachField calls fn with every field of an encoded message, in order,
// and reports whether b was well formed to its end.
func eachField(b []byte, fn func(field)) bool {
	for len(b) > 0 {
		num, typ, k := protowire.ConsumeTag(b)
		if k < 0 {
			return false
		}
		m := protowire.ConsumeFieldValue(num, typ, b[k:])
		if m < 0 {
			return false
		}
		fn(field{num: num, typ: typ, value: b[k : k+m], whole: b[:k+m]})
		b = b[k+m:]
	}
	return true
}

func decodeMMSlow(b []byte) (*mm.MmEntry, error) {
	e := new(mm.MmEntry)
	if err := proto.Unmarshal(b, e); err != nil {
		return nil, fmt.Errorf("decode %T: %w", e, err)
	}
	return e, nil
}

// VmaEntry field numbers (images/vma.proto).
const (
	vmaStart = 1 + iota
	vmaEnd
	vmaPgoff
	vmaShmid
	vmaProt
	vmaFlags
	vmaStatus
	vmaFd
	vmaMadv
	vmaFdflags
)

// vmaRequired has a bit for each required field of VmaEntry.
const vmaRequired = 1<<vmaStart | 1<<vmaEnd | 1<<vmaPgoff | 1<<vmaShmid |
	1<<vmaProt | 1<<vmaFlags | 1<<vmaStatus | 1<<vmaFd

// decodeVMAs decodes encoded VmaEntry messages, false when one needs
// proto.Unmarshal.
func decodeVMAs(encoded [][]byte) ([]*vma.VmaEntry, bool) {
	n := len(encoded)
	if n == 0 {
		return nil, true
	}
	entries := make([]vma.VmaEntry, n)
	u64 := make([]uint64, 5*n)
	u32 := make([]uint32, 4*n)
	i64 := make([]int64, n)
	out := make([]*vma.VmaEntry, n)
	for i, b := range encoded {
		v := &entries[i]
		u, w := u64[5*i:5*i+5], u32[4*i:4*i+4]
		var seen uint
		for len(b) > 0 {
			num, typ, k := protowire.ConsumeTag(b)
			if k < 0 || typ != protowire.VarintType {
				return nil, false
			}
			x, m := protowire.ConsumeVarint(b[k:])
			if m < 0 {
				return nil, false
			}
			b = b[k+m:]
			switch num {
			case vmaStart:
				u[0], v.Start = x, &u[0]
			case vmaEnd:
				u[1], v.End = x, &u[1]
			case vmaPgoff:
				u[2], v.Pgoff = x, &u[2]
			case vmaShmid:
				u[3], v.Shmid = x, &u[3]
			case vmaMadv:
				u[4], v.Madv = x, &u[4]
			case vmaProt:
				w[0], v.Prot = uint32(x), &w[0]
			case vmaFlags:
				w[1], v.Flags = uint32(x), &w[1]
			case vmaStatus:
				w[2], v.Status = uint32(x), &w[2]
			case vmaFdflags:
				w[3], v.Fdflags = uint32(x), &w[3]
			case vmaFd:
				i64[i], v.Fd = protowire.DecodeZigZag(x), &i64[i]
			default:
				return nil, false
			}
			seen |= 1 << num
		}
		if seen&vmaRequired != vmaRequired {
			return nil, false
		}
		out[i] = v
	}
	return out, true
}

// PagemapEntry field numbers (images/pagemap.proto).
const (
	pmVaddr = 1 + iota
	pmCompatNrPages
	pmInParent
	pmFlags
	pmNrPages
)

// pagemapSlab hands out PagemapEntry values and their fields from shared
// allocations.
type pagemapSlab struct {
	entries []pagemap.PagemapEntry
	u64     []uint64
	u32     []uint32
	bools   []bool
}

const pagemapSlabSize = 256

// decode decodes one encoded PagemapEntry, nil when it needs
// proto.Unmarshal.
func (s *pagemapSlab) decode(b []byte) *pagemap.PagemapEntry {
	if len(s.entries) == 0 {
		s.entries = make([]pagemap.PagemapEntry, pagemapSlabSize)
		s.u64 = make([]uint64, 2*pagemapSlabSize)
		s.u32 = make([]uint32, 2*pagemapSlabSize)
		s.bools = make([]bool, pagemapSlabSize)
	}
	// The slot is taken even if decoding gives up half way, so that no
	// half-filled entry is handed out later.
	e, u, w, f := &s.entries[0], s.u64[:2], s.u32[:2], s.bools[:1]
	s.entries, s.u64, s.u32, s.bools = s.entries[1:], s.u64[2:], s.u32[2:], s.bools[1:]
	var seen uint
	for len(b) > 0 {
		num, typ, k := protowire.ConsumeTag(b)
		if k < 0 || typ != protowire.VarintType {
			return nil
		}
		x, m := protowire.ConsumeVarint(b[k:])
		if m < 0 {
			return nil
		}
		b = b[k+m:]
		switch num {
		case pmVaddr:
			u[0], e.Vaddr = x, &u[0]
		case pmNrPages:
			u[1], e.NrPages = x, &u[1]
		case pmCompatNrPages:
			w[0], e.CompatNrPages = uint32(x), &w[0]
		case pmFlags:
			w[1], e.Flags = uint32(x), &w[1]
		case pmInParent:
			f[0], e.InParent = protowire.DecodeBool(x), &f[0]
		default:
			return nil
		}
		seen |= 1 << num
	}
	if seen&(1<<pmVaddr|1<<pmCompatNrPages) != 1<<pmVaddr|1<<pmCompatNrPages {
		return nil
	}
	return e
}

// decodeEntry decodes one encoded PagemapEntry from the slab, or
// with proto.Unmarshal when the slab's decoder gives up.
func (s *pagemapSlab) decodeEntry(b []byte) (*pagemap.PagemapEntry, error) {
	if e := s.decode(b); e != nil {
		return e, nil
	}
	e := new(pagemap.PagemapEntry)
	if err := proto.Unmarshal(b, e); err != nil {
		return nil, fmt.Errorf("decode %T: %w", e, err)
	}
	return e, nil
}
