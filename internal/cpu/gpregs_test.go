package cpu

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	corex86 "github.com/checkpoint-restore/go-criu/v8/crit/images/core-x86"
	"golang.org/x/sys/unix"
)

// distinctRegs returns registers that all hold different values.
func distinctRegs() unix.PtraceRegs {
	var r unix.PtraceRegs
	v := reflect.ValueOf(&r).Elem()
	for i := 0; i < v.NumField(); i++ {
		v.Field(i).SetUint(0x1111_0000_0000_0000 + uint64(i)*0x0101)
	}
	return r
}

func TestGPRegsToImageMapping(t *testing.T) {
	r := distinctRegs()
	e := GPRegsToImage(&r)
	checks := []struct {
		name      string
		got, want uint64
	}{
		{"r15", e.GetR15(), r.R15}, {"r8", e.GetR8(), r.R8},
		{"bp", e.GetBp(), r.Rbp}, {"bx", e.GetBx(), r.Rbx},
		{"ax", e.GetAx(), r.Rax}, {"cx", e.GetCx(), r.Rcx},
		{"dx", e.GetDx(), r.Rdx}, {"si", e.GetSi(), r.Rsi},
		{"di", e.GetDi(), r.Rdi}, {"orig_ax", e.GetOrigAx(), r.Orig_rax},
		{"ip", e.GetIp(), r.Rip}, {"cs", e.GetCs(), r.Cs},
		{"flags", e.GetFlags(), r.Eflags}, {"sp", e.GetSp(), r.Rsp},
		{"ss", e.GetSs(), r.Ss}, {"fs_base", e.GetFsBase(), r.Fs_base},
		{"gs_base", e.GetGsBase(), r.Gs_base}, {"ds", e.GetDs(), r.Ds},
		{"es", e.GetEs(), r.Es}, {"fs", e.GetFs(), r.Fs}, {"gs", e.GetGs(), r.Gs},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %#x, want %#x", c.name, c.got, c.want)
		}
	}
	if e.Mode == nil || *e.Mode != corex86.UserX86RegsMode_NATIVE {
		t.Errorf("mode = %v, want NATIVE set explicitly", e.Mode)
	}
}

func TestGPRegsRoundTrip(t *testing.T) {
	r := distinctRegs()
	e, err := reparse(GPRegsToImage(&r), &corex86.UserX86RegsEntry{})
	if err != nil {
		t.Fatalf("marshal through proto: %v", err)
	}
	got, err := GPRegsFromImage(e)
	if err != nil {
		t.Fatalf("GPRegsFromImage: %v", err)
	}
	if got != r {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, r)
	}
}

func TestGPRegsFromImageMissingField(t *testing.T) {
	r := distinctRegs()
	full := GPRegsToImage(&r)
	fields := requiredFields(full)
	if len(fields) != 27 {
		t.Fatalf("%d required fields, want 27", len(fields))
	}
	for _, fd := range fields {
		_, err := GPRegsFromImage(without(full, fd))
		if !errors.Is(err, ErrMissingField) || !strings.Contains(err.Error(), string(fd.Name())) {
			t.Errorf("without %s: err = %v, want ErrMissingField naming it", fd.Name(), err)
		}
	}
	if _, err := GPRegsFromImage(nil); !errors.Is(err, ErrMissingField) {
		t.Errorf("nil entry: err = %v, want ErrMissingField", err)
	}
}

func TestGPRegsFromImageMode(t *testing.T) {
	r := distinctRegs()
	e := GPRegsToImage(&r)
	e.Mode = nil // absent reads as the default, NATIVE
	if _, err := GPRegsFromImage(e); err != nil {
		t.Errorf("absent mode: %v", err)
	}
	e.Mode = corex86.UserX86RegsMode_COMPAT.Enum()
	if _, err := GPRegsFromImage(e); !errors.Is(err, ErrCompat) {
		t.Errorf("COMPAT: err = %v, want ErrCompat", err)
	}
	e.Mode = corex86.UserX86RegsMode(7).Enum()
	if _, err := GPRegsFromImage(e); err == nil {
		t.Error("unknown mode 7 accepted")
	}
}
