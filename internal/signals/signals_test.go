package signals

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	criucore "github.com/checkpoint-restore/go-criu/v8/crit/images/criu-core"
	criusa "github.com/checkpoint-restore/go-criu/v8/crit/images/criu-sa"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// sample is a handler disposition as glibc installs it.
var sample = KernelSigaction{
	Handler:  0x0000_5555_5555_1234,
	Flags:    0x0400_0004, // SA_RESTORER | SA_SIGINFO
	Restorer: 0x0000_7fff_f7a4_2520,
	Mask:     1<<(10-1) | 1<<(12-1), // SIGUSR1, SIGUSR2
}

func TestSigactionMarshalKnownOffsets(t *testing.T) {
	want := []byte{
		0x34, 0x12, 0x55, 0x55, 0x55, 0x55, 0x00, 0x00, // handler @0
		0x04, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, // flags @8
		0x20, 0x25, 0xa4, 0xf7, 0xff, 0x7f, 0x00, 0x00, // restorer @16
		0x00, 0x0a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // mask @24
	}
	got := sample.Marshal()
	if !bytes.Equal(got, want) {
		t.Fatalf("Marshal:\n got % x\nwant % x", got, want)
	}
	back, err := UnmarshalSigaction(got)
	if err != nil || back != sample {
		t.Errorf("UnmarshalSigaction = %+v, %v", back, err)
	}
}

func TestUnmarshalSigactionSize(t *testing.T) {
	b := sample.Marshal()
	for _, n := range []int{0, 8, 31} {
		if _, err := UnmarshalSigaction(b[:n]); err == nil {
			t.Errorf("%d bytes accepted", n)
		}
	}
	if _, err := UnmarshalSigaction(append(b, 0)); err == nil {
		t.Error("33 bytes accepted")
	}
}

func TestSigactionImageRoundTrip(t *testing.T) {
	e := ToImage(sample)
	if e.CompatSigaction != nil || e.MaskExtended != nil {
		t.Errorf("compat_sigaction or mask_extended set: %v", e)
	}
	if e.GetSigaction() != sample.Handler || e.GetMask() != sample.Mask ||
		e.GetFlags() != sample.Flags || e.GetRestorer() != sample.Restorer {
		t.Errorf("ToImage = %v", e)
	}
	parsed := &criusa.SaEntry{}
	if err := reparse(e, parsed); err != nil {
		t.Fatal(err)
	}
	got, err := FromImage(parsed)
	if err != nil || got != sample {
		t.Errorf("FromImage = %+v, %v", got, err)
	}
}

func TestSigactionFromImageErrors(t *testing.T) {
	full := ToImage(sample)
	fields := requiredFields(full)
	if len(fields) != 4 {
		t.Fatalf("%d required fields, want 4", len(fields))
	}
	for _, fd := range fields {
		_, err := FromImage(without(full, fd))
		if !errors.Is(err, ErrMissingField) || !strings.Contains(err.Error(), string(fd.Name())) {
			t.Errorf("without %s: err = %v", fd.Name(), err)
		}
	}
	if _, err := FromImage(nil); !errors.Is(err, ErrMissingField) {
		t.Errorf("nil entry: err = %v", err)
	}
	compat := ToImage(sample)
	compat.CompatSigaction = proto.Bool(true)
	if _, err := FromImage(compat); !errors.Is(err, ErrCompat) {
		t.Errorf("compat: err = %v", err)
	}
	ext := ToImage(sample)
	ext.MaskExtended = proto.Uint64(0)
	if _, err := FromImage(ext); err != nil {
		t.Errorf("zero mask_extended: %v", err)
	}
	ext.MaskExtended = proto.Uint64(1)
	if _, err := FromImage(ext); err == nil || !strings.Contains(err.Error(), "mask_extended") {
		t.Errorf("mask_extended 1: err = %v", err)
	}
}

func TestRestorable(t *testing.T) {
	want := map[int]bool{-1: false, 0: false, 1: true, 2: true, 9: false, 15: true,
		17: true, 19: false, 20: true, 32: true, 64: true, 65: false}
	for sig, w := range want {
		if got := Restorable(sig); got != w {
			t.Errorf("Restorable(%d) = %v, want %v", sig, got, w)
		}
	}
	n := 0
	for sig := 1; sig <= NumSignals; sig++ {
		if Restorable(sig) {
			n++
		}
	}
	if n != NumSignals-2 {
		t.Errorf("%d restorable signals, want %d", n, NumSignals-2)
	}
}

// sampleStack has SS_AUTODISARM set, which makes Flags negative.
var sampleStack = AltStack{Sp: 0x7f00_0001_0000, Flags: -1 << 31, Size: 0x2_0000}

func TestAltStackMarshalKnownOffsets(t *testing.T) {
	want := []byte{
		0x00, 0x00, 0x01, 0x00, 0x00, 0x7f, 0x00, 0x00, // ss_sp @0
		0x00, 0x00, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, // ss_flags @8, padding
		0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, // ss_size @16
	}
	got := sampleStack.Marshal()
	if !bytes.Equal(got, want) {
		t.Fatalf("Marshal:\n got % x\nwant % x", got, want)
	}
	got[12] = 0xee // padding the kernel might leave dirty
	back, err := UnmarshalAltStack(got)
	if err != nil || back != sampleStack {
		t.Errorf("UnmarshalAltStack = %+v, %v", back, err)
	}
	if _, err := UnmarshalAltStack(got[:23]); err == nil {
		t.Error("23 bytes accepted")
	}
}

func TestAltStackImageRoundTrip(t *testing.T) {
	e := AltStackToImage(sampleStack)
	if e.GetSsFlags() != 0x8000_0000 || e.GetSsSp() != sampleStack.Sp || e.GetSsSize() != sampleStack.Size {
		t.Errorf("AltStackToImage = %v", e)
	}
	parsed := &criucore.ThreadSasEntry{}
	if err := reparse(e, parsed); err != nil {
		t.Fatal(err)
	}
	got, err := AltStackFromImage(parsed)
	if err != nil || got != sampleStack {
		t.Errorf("AltStackFromImage = %+v, %v", got, err)
	}
	for _, fd := range requiredFields(e) {
		_, err := AltStackFromImage(without(e, fd))
		if !errors.Is(err, ErrMissingField) || !strings.Contains(err.Error(), string(fd.Name())) {
			t.Errorf("without %s: err = %v", fd.Name(), err)
		}
	}
	if _, err := AltStackFromImage(nil); !errors.Is(err, ErrMissingField) {
		t.Errorf("nil entry: err = %v", err)
	}
}

// requiredFields lists the proto2 required fields of m's message type.
func requiredFields(m proto.Message) []protoreflect.FieldDescriptor {
	var out []protoreflect.FieldDescriptor
	fields := m.ProtoReflect().Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		if fd := fields.Get(i); fd.Cardinality() == protoreflect.Required {
			out = append(out, fd)
		}
	}
	return out
}

// without returns a copy of m with field fd cleared.
func without[M proto.Message](m M, fd protoreflect.FieldDescriptor) M {
	c := proto.Clone(m).(M)
	c.ProtoReflect().Clear(fd)
	return c
}

// reparse marshals m and parses it into into, as writing and reading an
// image would; Marshal fails if a required field is unset.
func reparse(m, into proto.Message) error {
	b, err := proto.Marshal(m)
	if err != nil {
		return err
	}
	return proto.Unmarshal(b, into)
}
