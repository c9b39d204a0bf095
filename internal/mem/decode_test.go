package mem

import (
	"math/rand"
	"testing"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/mm"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/pagemap"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/vma"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

func randomVMA(r *rand.Rand) *vma.VmaEntry {
	v := &vma.VmaEntry{
		Start:  proto.Uint64(r.Uint64()),
		End:    proto.Uint64(r.Uint64() >> r.Intn(64)),
		Pgoff:  proto.Uint64(uint64(r.Intn(1 << 20))),
		Shmid:  proto.Uint64(r.Uint64()),
		Prot:   proto.Uint32(r.Uint32()),
		Flags:  proto.Uint32(uint32(r.Intn(1 << 16))),
		Status: proto.Uint32(r.Uint32()),
		Fd:     proto.Int64(int64(r.Intn(2000)) - 1000),
	}
	if r.Intn(2) == 0 {
		v.Madv = proto.Uint64(r.Uint64())
	}
	if r.Intn(2) == 0 {
		v.Fdflags = proto.Uint32(r.Uint32())
	}
	return v
}

func randomMM(r *rand.Rand, n int) *mm.MmEntry {
	e := &mm.MmEntry{
		MmStartCode: proto.Uint64(1), MmEndCode: proto.Uint64(2), MmStartData: proto.Uint64(3),
		MmEndData: proto.Uint64(4), MmStartStack: proto.Uint64(5), MmStartBrk: proto.Uint64(6),
		MmBrk: proto.Uint64(7), MmArgStart: proto.Uint64(8), MmArgEnd: proto.Uint64(9),
		MmEnvStart: proto.Uint64(10), MmEnvEnd: proto.Uint64(11), ExeFileId: proto.Uint32(12),
		MmSavedAuxv: []uint64{33, 0, 6, 4096},
		Dumpable:    proto.Int32(1),
	}
	for range n {
		e.Vmas = append(e.Vmas, randomVMA(r))
	}
	return e
}

func TestDecodeMMMatchesProto(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	for _, n := range []int{0, 1, 2, 100} {
		want := randomMM(r, n)
		b, err := proto.Marshal(want)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeMM(b)
		if err != nil {
			t.Fatalf("%d VMAs: %v", n, err)
		}
		if !proto.Equal(got, want) {
			t.Errorf("%d VMAs: decoded %v, want %v", n, got, want)
		}
	}
}

// A VMA with a field the hand decoder does not know is decoded by proto,
// unknown field included.
func TestDecodeMMUnknownVMAField(t *testing.T) {
	want := randomMM(rand.New(rand.NewSource(2)), 3)
	raw := want.Vmas[1].ProtoReflect().GetUnknown()
	raw = protowire.AppendTag(raw, 99, protowire.VarintType)
	raw = protowire.AppendVarint(raw, 7)
	want.Vmas[1].ProtoReflect().SetUnknown(raw)
	b, err := proto.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeMM(b)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got, want) {
		t.Errorf("decoded %v, want %v", got, want)
	}
}

// A VMA without a required field is an error, as with proto.Unmarshal.
func TestDecodeMMMissingRequired(t *testing.T) {
	e := randomMM(rand.New(rand.NewSource(3)), 2)
	e.Vmas[0].Status = nil
	b, err := proto.MarshalOptions{AllowPartial: true}.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := DecodeMM(b); err == nil {
		t.Fatal("decoded a VMA without status")
	}
}

func TestPagemapSlabMatchesProto(t *testing.T) {
	r := rand.New(rand.NewSource(4))
	var s pagemapSlab
	for i := range 3 * pagemapSlabSize {
		want := &pagemap.PagemapEntry{Vaddr: proto.Uint64(r.Uint64()), CompatNrPages: proto.Uint32(r.Uint32())}
		if i%2 == 0 {
			want.NrPages = proto.Uint64(r.Uint64())
			want.Flags = proto.Uint32(r.Uint32())
		}
		if i%3 == 0 {
			want.InParent = proto.Bool(i%2 == 0)
		}
		b, err := proto.Marshal(want)
		if err != nil {
			t.Fatal(err)
		}
		if i%7 == 0 { // a field the slab does not know
			b = protowire.AppendTag(b, 42, protowire.BytesType)
			b = protowire.AppendBytes(b, []byte("x"))
			if err := proto.Unmarshal(b, want); err != nil {
				t.Fatal(err)
			}
		}
		got, err := s.decodeEntry(b)
		if err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(got, want) {
			t.Fatalf("entry %d: decoded %v, want %v", i, got, want)
		}
	}
	if _, err := s.decodeEntry(protowire.AppendVarint(protowire.AppendTag(nil, pmVaddr, protowire.VarintType), 1)); err == nil {
		t.Error("decoded an entry without compat_nr_pages")
	}
}

// FuzzDecodeMM: the hand decoder agrees with proto.Unmarshal on any input.
func FuzzDecodeMM(f *testing.F) {
	b, _ := proto.Marshal(randomMM(rand.New(rand.NewSource(5)), 3))
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		want := new(mm.MmEntry)
		werr := proto.Unmarshal(b, want)
		got, err := DecodeMM(b)
		if (err == nil) != (werr == nil) {
			t.Fatalf("DecodeMM error %v, proto.Unmarshal error %v", err, werr)
		}
		if err == nil && !proto.Equal(got, want) {
			t.Fatalf("decoded %v, want %v", got, want)
		}
	})
}

// BenchmarkDecodeMM decodes an mm image entry of 10,000 one-page VMAs by
// hand and, for comparison, with proto.Unmarshal.
func BenchmarkDecodeMM(b *testing.B) {
	e := randomMM(rand.New(rand.NewSource(6)), 0)
	for i := range uint64(10000) {
		e.Vmas = append(e.Vmas, &vma.VmaEntry{
			Start: proto.Uint64(0x7f0000000000 + i*4096), End: proto.Uint64(0x7f0000001000 + i*4096),
			Pgoff: proto.Uint64(0), Shmid: proto.Uint64(0), Prot: proto.Uint32(uint32(1 + i%2*2)),
			Flags: proto.Uint32(0x22), Status: proto.Uint32(0x201), Fd: proto.Int64(-1),
		})
	}
	enc, err := proto.Marshal(e)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("hand", func(b *testing.B) {
		for b.Loop() {
			if _, err := DecodeMM(enc); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("proto", func(b *testing.B) {
		for b.Loop() {
			if _, err := decodeMMSlow(enc); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkDecodePagemap decodes 10,000 pagemap entries by hand and, for
// comparison, with proto.Unmarshal.
func BenchmarkDecodePagemap(b *testing.B) {
	var enc [][]byte
	for i := range uint64(10000) {
		e, err := proto.Marshal(&pagemap.PagemapEntry{Vaddr: proto.Uint64(0x7f0000000000 + 2*i*4096),
			CompatNrPages: proto.Uint32(1), NrPages: proto.Uint64(1), Flags: proto.Uint32(PEPresent)})
		if err != nil {
			b.Fatal(err)
		}
		enc = append(enc, e)
	}
	b.Run("hand", func(b *testing.B) {
		for b.Loop() {
			var s pagemapSlab
			for _, e := range enc {
				if _, err := s.decodeEntry(e); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("proto", func(b *testing.B) {
		for b.Loop() {
			for _, e := range enc {
				if err := proto.Unmarshal(e, new(pagemap.PagemapEntry)); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}
