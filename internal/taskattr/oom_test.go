package taskattr

import (
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"amber/internal/plan"
)

func newBuilder() *plan.Builder { return plan.NewBuilder(0x10000000, plan.PageSize) }

func TestPlanOOMScoreAdj(t *testing.T) {
	for _, tc := range []struct {
		name    string
		want    *int32
		floor   int32
		value   string // written; "" for no calls
		warning bool
	}{
		{"absent", nil, 0, "", false},
		{"raised", ptr(int32(400)), 0, "400", false},
		{"lowered within floor", ptr(int32(-200)), -500, "-200", false},
		{"below floor", ptr(int32(-900)), 0, "0", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBuilder()
			warnings := PlanOOMScoreAdj(b, tc.want, tc.floor)
			if (len(warnings) > 0) != tc.warning {
				t.Errorf("warnings %q, want some: %v", warnings, tc.warning)
			}
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
			if calls[1].Args[0] != calls[2].Args[0] {
				t.Errorf("writes fd %d, closes fd %d", calls[1].Args[0], calls[2].Args[0])
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }
