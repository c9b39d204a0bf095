package rlimit

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"testing"

	criucore "github.com/checkpoint-restore/go-criu/v8/crit/images/criu-core"
	rlimitimg "github.com/checkpoint-restore/go-criu/v8/crit/images/rlimit"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/plan"
)

const inf = ^uint64(0) // RLIM_INFINITY

func image(lims ...Limit) *criucore.TaskRlimitsEntry {
	e := &criucore.TaskRlimitsEntry{}
	for _, l := range lims {
		e.Rlimits = append(e.Rlimits, &rlimitimg.RlimitEntry{Cur: proto.Uint64(l.Cur), Max: proto.Uint64(l.Max)})
	}
	return e
}

// setCall is a planned prlimit64, decoded.
type setCall struct {
	res int
	Limit
}

func decodeSets(t *testing.T, p *plan.Program) []setCall {
	t.Helper()
	var out []setCall
	for _, c := range p.Calls {
		if c.Nr != unix.SYS_PRLIMIT64 {
			t.Errorf("unexpected call %s", plan.SyscallName(c.Nr))
			continue
		}
		if c.Args[0] != 0 || c.Args[3] != 0 {
			t.Errorf("prlimit64 pid %d old %#x, want 0 (self) and NULL", c.Args[0], c.Args[3])
		}
		off := c.Args[2] - p.Base
		b := p.Image[off : off+16]
		out = append(out, setCall{int(c.Args[1]), Limit{binary.LittleEndian.Uint64(b), binary.LittleEndian.Uint64(b[8:])}})
	}
	return out
}

func TestPlanRestore(t *testing.T) {
	cur := []Limit{{100, 200}, {1024, 4096}, {inf, inf}, {8 << 20, inf}}
	cases := []struct {
		name     string
		dumped   []Limit
		current  []Limit
		sets     []setCall
		warnings []string // one substring per warning
	}{
		{"all equal", cur, cur, nil, nil},
		{"lower soft", []Limit{{50, 200}, cur[1], cur[2], cur[3]}, cur, []setCall{{0, Limit{50, 200}}}, nil},
		{"lower both", []Limit{cur[0], {256, 512}, cur[2], cur[3]}, cur, []setCall{{1, Limit{256, 512}}}, nil},
		{"raise soft within hard", []Limit{{200, 200}, {4096, 4096}, cur[2], cur[3]}, cur,
			[]setCall{{0, Limit{200, 200}}, {1, Limit{4096, 4096}}}, nil},
		{"lower from infinity", []Limit{cur[0], cur[1], {1 << 30, 1 << 31}, {8 << 20, 16 << 20}}, cur,
			[]setCall{{2, Limit{1 << 30, 1 << 31}}, {3, Limit{8 << 20, 16 << 20}}}, nil},
		{"raise hard: soft set within", []Limit{{150, 300}, cur[1], cur[2], cur[3]}, cur,
			[]setCall{{0, Limit{150, 200}}}, []string{"rlimit 0: hard limit 300 kept at 200"}},
		{"raise hard and soft above it", []Limit{{250, 300}, cur[1], cur[2], cur[3]}, cur,
			[]setCall{{0, Limit{200, 200}}}, []string{"rlimit 0"}},
		{"raise hard to infinity, soft unchanged", []Limit{cur[0], {1024, inf}, cur[2], cur[3]}, cur,
			nil, []string{"rlimit 1: hard limit 18446744073709551615 kept at 4096"}},
		{"two raised", []Limit{{100, 201}, {1024, 4097}, cur[2], cur[3]}, cur,
			nil, []string{"rlimit 0", "rlimit 1"}},
		{"image longer than current", append(slices.Clone(cur), Limit{1, 1}), cur, nil, nil},
		{"image shorter than current", []Limit{{10, 20}}, cur, []setCall{{0, Limit{10, 20}}}, nil},
		{"no limits in the image", nil, cur, nil, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := plan.NewBuilder(0x7000_0000_0000, 0)
			e := image(c.dumped...)
			if c.dumped == nil {
				e = nil
			}
			warnings := PlanRestore(b, e, c.current)
			got := decodeSets(t, b.Finish())
			if !slices.Equal(got, c.sets) {
				t.Errorf("sets %v, want %v", got, c.sets)
			}
			if len(warnings) != len(c.warnings) {
				t.Fatalf("warnings %q, want %d", warnings, len(c.warnings))
			}
			for i, w := range c.warnings {
				if !strings.Contains(warnings[i], w) || !strings.Contains(warnings[i], "CAP_SYS_RESOURCE") {
					t.Errorf("warning %q, want %q and the reason", warnings[i], w)
				}
			}
			// Effective is what the task has afterwards.
			eff := Effective(e, c.current)
			after := slices.Clone(c.current)
			for _, s := range got {
				after[s.res] = s.Limit
			}
			if !slices.Equal(eff, after) {
				t.Errorf("Effective = %v, plan leaves %v", eff, after)
			}
			for res, l := range eff {
				if l.Cur > l.Max || l.Max > c.current[res].Max {
					t.Errorf("limit %d: %v invalid or raising the hard limit %d", res, l, c.current[res].Max)
				}
			}
		})
	}
}

func TestEffectiveDoesNotChangeCurrent(t *testing.T) {
	cur := []Limit{{1, 2}, {3, 4}}
	Effective(image(Limit{0, 0}, Limit{0, 0}), cur)
	if cur[0] != (Limit{1, 2}) || cur[1] != (Limit{3, 4}) {
		t.Errorf("current changed to %v", cur)
	}
}

func TestPlanRestoreDescribesCalls(t *testing.T) {
	b := plan.NewBuilder(0x7000_0000_0000, 0)
	PlanRestore(b, image(Limit{5, 6}), []Limit{{7, 8}})
	p := b.Finish()
	if len(p.Calls) != 1 || p.Calls[0].What != fmt.Sprintf("set rlimit %d to %d/%d", 0, 5, 6) {
		t.Errorf("plan:\n%s", p)
	}
}
