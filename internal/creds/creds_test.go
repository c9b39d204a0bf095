package creds

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/creds"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// sampleCreds returns credentials with every field distinct.
func sampleCreds() Creds {
	return Creds{
		Uid:        [4]uint32{1000, 1001, 1002, 1003},
		Gid:        [4]uint32{2000, 2001, 2002, 2003},
		Groups:     []uint32{4, 24, 27},
		CapInh:     0x0000_0001_0000_0002,
		CapPrm:     0x0000_01ff_ffff_fffe,
		CapEff:     0x0000_0100_8000_0000,
		CapBnd:     0x0000_01ff_ffff_ffff,
		CapAmb:     0x0000_0000_0000_0400,
		Secbits:    0x2f,
		NoNewPrivs: true,
	}
}

func TestToImageMapping(t *testing.T) {
	c := sampleCreds()
	e := ToImage(c)
	ids := []struct {
		name      string
		got, want uint32
	}{
		{"uid", e.GetUid(), 1000}, {"euid", e.GetEuid(), 1001},
		{"suid", e.GetSuid(), 1002}, {"fsuid", e.GetFsuid(), 1003},
		{"gid", e.GetGid(), 2000}, {"egid", e.GetEgid(), 2001},
		{"sgid", e.GetSgid(), 2002}, {"fsgid", e.GetFsgid(), 2003},
		{"secbits", e.GetSecbits(), 0x2f}, {"no_new_privs", e.GetNoNewPrivs(), 1},
	}
	for _, id := range ids {
		if id.got != id.want {
			t.Errorf("%s = %d, want %d", id.name, id.got, id.want)
		}
	}
	caps := []struct {
		name      string
		got, want []uint32
	}{
		{"cap_inh", e.CapInh, []uint32{0x2, 0x1}},
		{"cap_prm", e.CapPrm, []uint32{0xffff_fffe, 0x1ff}},
		{"cap_eff", e.CapEff, []uint32{0x8000_0000, 0x100}},
		{"cap_bnd", e.CapBnd, []uint32{0xffff_ffff, 0x1ff}},
		{"cap_amb", e.CapAmb, []uint32{0x400, 0}},
		{"groups", e.Groups, []uint32{4, 24, 27}},
	}
	for _, cp := range caps {
		if !reflect.DeepEqual(cp.got, cp.want) {
			t.Errorf("%s = %#x, want %#x", cp.name, cp.got, cp.want)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	for _, c := range []Creds{sampleCreds(), {}, {Groups: []uint32{0}}} {
		parsed := &creds.CredsEntry{}
		if err := reparse(ToImage(c), parsed); err != nil {
			t.Fatal(err)
		}
		got, err := FromImage(parsed)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, c) {
			t.Errorf("round trip:\n got %+v\nwant %+v", got, c)
		}
	}
}

func TestToImageDoesNotAlias(t *testing.T) {
	c := sampleCreds()
	e := ToImage(c)
	e.Groups[0] = 99
	if c.Groups[0] != 4 {
		t.Error("ToImage shares Groups with its argument")
	}
	back, _ := FromImage(e)
	e.Groups[1] = 99
	if back.Groups[1] != 24 {
		t.Error("FromImage shares Groups with the entry")
	}
}

func TestFromImageMissingField(t *testing.T) {
	full := ToImage(sampleCreds())
	fields := requiredFields(full)
	if len(fields) != 9 {
		t.Fatalf("%d required fields, want 9", len(fields))
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
}

func TestFromImageCapSizes(t *testing.T) {
	for _, name := range []string{"cap_inh", "cap_prm", "cap_eff", "cap_bnd", "cap_amb"} {
		for _, words := range [][]uint32{{1}, {1, 2, 3}} {
			e := ToImage(sampleCreds())
			set(e, name, words)
			if _, err := FromImage(e); err == nil || !strings.Contains(err.Error(), name) {
				t.Errorf("%s with %d words: err = %v", name, len(words), err)
			}
		}
	}
	for _, name := range []string{"cap_inh", "cap_prm", "cap_eff", "cap_bnd"} {
		e := ToImage(sampleCreds())
		set(e, name, nil)
		if _, err := FromImage(e); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s empty: err = %v", name, err)
		}
	}
}

func TestFromImageOldImage(t *testing.T) {
	e := ToImage(sampleCreds())
	e.CapAmb = nil
	e.NoNewPrivs = nil
	c, err := FromImage(e)
	if err != nil {
		t.Fatal(err)
	}
	if c.CapAmb != 0 || c.NoNewPrivs {
		t.Errorf("absent cap_amb/no_new_privs read as %#x/%v", c.CapAmb, c.NoNewPrivs)
	}
}

// set replaces the named repeated field of e.
func set(e *creds.CredsEntry, name string, words []uint32) {
	fields := map[string]*[]uint32{
		"cap_inh": &e.CapInh, "cap_prm": &e.CapPrm, "cap_eff": &e.CapEff,
		"cap_bnd": &e.CapBnd, "cap_amb": &e.CapAmb,
	}
	*fields[name] = words
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
