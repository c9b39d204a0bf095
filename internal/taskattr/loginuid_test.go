package taskattr

import (
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestPlanLoginuid(t *testing.T) {
	for _, tc := range []struct {
		name            string
		want, inherited *uint32
		value           string // written; "" for no calls
	}{
		{"absent", nil, ptr(uint32(3)), ""},
		{"inherited", ptr(uint32(3)), ptr(uint32(3)), ""},
		{"changed", ptr(uint32(5)), ptr(uint32(3)), "5"},
		{"unset again", ptr(uint32(4294967295)), ptr(uint32(3)), "4294967295"},
		{"inherited unknown", ptr(uint32(3)), nil, "3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBuilder()
			PlanLoginuid(b, tc.want, tc.inherited)
			calls := b.Finish().Calls
			if tc.value == "" {
				if len(calls) != 0 {
					t.Fatalf("calls %v, want none", calls)
				}
				return
			}
			if len(calls) != 3 || calls[0].Nr != unix.SYS_OPENAT || calls[1].Nr != unix.SYS_WRITE || calls[2].Nr != unix.SYS_CLOSE {
				t.Fatalf("calls %v, want openat, write, close", calls)
			}
			if !strings.HasSuffix(calls[1].What, " "+tc.value) || calls[1].Args[2] != uint64(len(tc.value)) {
				t.Errorf("write %v, want %q", calls[1], tc.value)
			}
		})
	}
}

func TestReadLoginuid(t *testing.T) {
	v, err := ReadLoginuid(0)
	if err != nil {
		t.Fatal(err)
	}
	if _, statErr := os.Stat("/proc/self/loginuid"); statErr != nil {
		if v != nil {
			t.Errorf("no /proc/self/loginuid, but read %d", *v)
		}
		return
	}
	if v == nil {
		t.Fatal("/proc/self/loginuid exists, read nothing")
	}
	if w, err := ReadLoginuid(os.Getpid()); err != nil || w == nil || *w != *v {
		t.Errorf("by pid: %v, %v; by self: %d", w, err, *v)
	}
}
