package creds

import (
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"amber/internal/plan"
)

// Capabilities the tests use by number.
const (
	capChown          = 0
	capKill           = 5
	capNetBindService = 10
	capNetRaw         = 13
	capSysAdmin       = 21
	capSysResource    = 24
	allCaps           = 1<<(modelLastCap+1) - 1
)

// amberHere is what a restored thread inherits from amber on the test
// machines: root with every capability but CAP_SYS_RESOURCE, which the
// bounding set lacks too.
func amberHere() Creds {
	caps := uint64(allCaps &^ (1 << capSysResource))
	return Creds{CapPrm: caps, CapEff: caps, CapBnd: caps}
}

// planned runs PlanRestore in a fresh builder and returns the program.
func planned(t *testing.T, want, have Creds) (*plan.Program, Creds, []string, error) {
	t.Helper()
	b := plan.NewBuilder(0x10000, 0)
	b.StartSection("creds")
	expect, warnings, err := PlanRestore(b, want, have)
	return b.Finish(), expect, warnings, err
}

// mustRestore plans want from have, runs the plan on the kernel model and
// requires that it ends with exactly the credentials PlanRestore said.
func mustRestore(t *testing.T, want, have Creds) (*plan.Program, Creds, []string) {
	t.Helper()
	prog, expect, warnings, err := planned(t, want, have)
	if err != nil {
		t.Fatalf("plan %+v from %+v: %v", want, have, err)
	}
	k := &kernel{c: have, prog: prog}
	if i, e := k.run("creds"); e != 0 {
		t.Fatalf("plan %+v from %+v: call %d %v: %v\n%s", want, have, i, prog.Calls[i], e, prog)
	}
	if !reflect.DeepEqual(norm(k.c), norm(expect)) {
		t.Fatalf("plan %+v from %+v ends with\n %+v, said\n %+v\n%s", want, have, k.c, expect, prog)
	}
	return prog, expect, warnings
}

// norm makes an empty group list nil, as both mean no groups.
func norm(c Creds) Creds {
	if len(c.Groups) == 0 {
		c.Groups = nil
	}
	return c
}

// whats lists the purposes of the planned calls.
func whats(p *plan.Program) []string {
	var out []string
	for _, c := range p.Calls {
		out = append(out, c.What)
	}
	return out
}

// TestPlanRestoreNoCaps is the task of `setpriv --inh-caps=-all
// --bounding-set=-all`: root with no capability at all. Every bit of the
// bounding set amber has is dropped, then permitted and effective.
func TestPlanRestoreNoCaps(t *testing.T) {
	want := Creds{}
	prog, expect, warnings := mustRestore(t, want, amberHere())
	if !reflect.DeepEqual(expect, want) || len(warnings) != 0 {
		t.Errorf("expect %+v, warnings %q", expect, warnings)
	}
	var wantCalls []string
	for n := 0; n <= modelLastCap; n++ {
		if n != capSysResource {
			wantCalls = append(wantCalls, "drop "+CapName(n)+" from the bounding set")
		}
	}
	wantCalls = append(wantCalls, "set permitted and effective capabilities")
	if got := whats(prog); !reflect.DeepEqual(got, wantCalls) {
		t.Errorf("calls:\n%s", prog)
	}
}

// TestPlanRestoreUnchanged plans nothing for a thread that already has
// the dumped credentials.
func TestPlanRestoreUnchanged(t *testing.T) {
	user := sampleCreds()
	user.CapInh |= user.CapAmb
	for _, c := range []Creds{amberHere(), user} {
		prog, _, warnings, err := planned(t, c, c)
		if err != nil || len(prog.Calls) != 0 || len(warnings) != 0 {
			t.Errorf("%+v: %v, warnings %q, calls:\n%s", c, err, warnings, prog)
		}
	}
}

// TestPlanRestoreOrder restores a non-root thread keeping capabilities,
// an ambient one among them, an inheritable one outside its bounding set,
// locked securebits that forbid raising ambient capabilities, and no
// CAP_SETPCAP: each step must come where the kernel still allows it.
func TestPlanRestoreOrder(t *testing.T) {
	prm := uint64(1<<capNetBindService | 1<<capNetRaw | 1<<capKill)
	want := Creds{
		Uid: [4]uint32{1000, 1000, 1000, 1001}, Gid: [4]uint32{100, 100, 100, 100}, Groups: []uint32{27, 100},
		CapInh: 1<<capNetBindService | 1<<capSysAdmin, CapPrm: prm, CapEff: 1 << capNetRaw,
		CapBnd: allCaps &^ (1<<capSysAdmin | 1<<capSetPCAP), CapAmb: 1 << capNetBindService,
		Secbits:    SecbitKeepCaps | SecbitKeepCaps<<1 | secbitNoAmbientRaise | secbitNoAmbientRaise<<1,
		NoNewPrivs: true,
	}
	prog, expect, warnings := mustRestore(t, want, amberHere())
	want.CapBnd &^= 1 << capSysResource
	if !reflect.DeepEqual(expect, want) {
		t.Errorf("expect\n %+v, want\n %+v", expect, want)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "CAP_SYS_RESOURCE") {
		t.Errorf("warnings %q, want one naming CAP_SYS_RESOURCE", warnings)
	}
	order := []string{
		"keep capabilities while the uid changes", "setgroups", "setresgid", "setresuid", "setfsuid",
		"set inheritable capabilities", "drop CAP_SETPCAP", "raise ambient CAP_NET_BIND_SERVICE",
		"set securebits", "set permitted and effective capabilities", "set no_new_privs",
	}
	got := whats(prog)
	at := 0
	for _, w := range order {
		i := indexPrefix(got[at:], w)
		if i < 0 {
			t.Fatalf("no %q after call %d:\n%s", w, at, prog)
		}
		at += i + 1
	}
}

func indexPrefix(list []string, prefix string) int {
	for i, s := range list {
		if strings.HasPrefix(s, prefix) {
			return i
		}
	}
	return -1
}

// TestPlanRestoreRefused refuses what amber cannot grant, naming the set
// and the capability, and images that break the kernel's invariants.
func TestPlanRestoreRefused(t *testing.T) {
	sysRes := uint64(1 << capSysResource)
	cases := []struct {
		name string
		want Creds
		have Creds
		msg  string
	}{
		{"permitted", Creds{CapPrm: sysRes}, amberHere(), "permitted CAP_SYS_RESOURCE"},
		{"effective", Creds{CapPrm: sysRes, CapEff: sysRes}, amberHere(), "permitted CAP_SYS_RESOURCE"},
		{"ambient", Creds{CapPrm: sysRes, CapInh: sysRes, CapAmb: sysRes}, amberHere(), "permitted CAP_SYS_RESOURCE"},
		{"inheritable", Creds{CapInh: sysRes | 1<<capChown}, amberHere(), "inheritable CAP_SYS_RESOURCE outside"},
		{"bad effective", Creds{CapEff: 1 << capKill}, amberHere(), "effective CAP_KILL not permitted"},
		{"bad ambient", Creds{CapPrm: 1 << capKill, CapAmb: 1 << capKill}, amberHere(), "ambient CAP_KILL not both"},
		{"locked securebits", amberHere(), withSecbits(amberHere(), SecbitKeepCaps<<1), "locked"},
		{"no CAP_SETUID", Creds{Uid: [4]uint32{1, 1, 1, 1}}, Creds{}, "need CAP_SETUID"},
		{"no CAP_SETPCAP", Creds{Secbits: SecbitKeepCaps}, Creds{}, "need CAP_SETPCAP"},
		{"no raise", Creds{CapPrm: 1, CapInh: 1, CapAmb: 1}, withSecbits(amberHere(), secbitNoAmbientRaise), "forbid raising"},
	}
	for _, c := range cases {
		_, _, _, err := planned(t, c.want, c.have)
		if err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: err = %v, want one containing %q", c.name, err, c.msg)
		}
	}
}

func withSecbits(c Creds, bits uint32) Creds {
	c.Secbits = bits
	return c
}

// TestPlanRestoreRandom plans random credentials from amber's and from
// random ones, and runs each plan on the kernel model: a plan must end
// with the credentials PlanRestore said (the dumped ones, but for what
// amber's bounding set lacks), and amber's plans may fail only for what
// it cannot grant.
func TestPlanRestoreRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var fromAmber, fromRandom int // plans that ran
	for i := 0; i < 20000; i++ {
		want := randomCreds(r)
		have := amberHere()
		random := i%4 == 3
		if random {
			have = randomCreds(r)
			if r.IntN(2) == 0 { // one likely to be able to
				have.CapPrm |= want.CapPrm | 1<<capSetUID | 1<<capSetGID | 1<<capSetPCAP
				have.CapEff = have.CapPrm
				have.CapBnd |= want.CapInh
			}
		}
		_, expect, _, err := planned(t, want, have)
		grantable := want.CapPrm&^have.CapPrm == 0 && want.CapInh&^(have.CapInh|have.CapBnd) == 0
		if !random && (err == nil) != grantable {
			t.Fatalf("want %+v from amber: err %v, grantable %v", want, err, grantable)
		}
		if err != nil {
			continue
		}
		mustRestore(t, want, have)
		if random {
			fromRandom++
		} else {
			fromAmber++
		}
		want.CapBnd &= have.CapBnd
		want.NoNewPrivs = want.NoNewPrivs || have.NoNewPrivs
		if !reflect.DeepEqual(norm(expect), norm(want)) {
			t.Fatalf("expect\n %+v, want\n %+v", expect, want)
		}
	}
	// Most random sets are not grantable: enough must be to mean something.
	if fromAmber < 1000 || fromRandom < 500 {
		t.Errorf("only %d plans from amber's credentials and %d from random ones ran", fromAmber, fromRandom)
	}
	t.Logf("%d plans from amber's credentials and %d from random ones ran", fromAmber, fromRandom)
}

// randomCreds returns consistent credentials: effective within permitted,
// ambient within permitted and inheritable, securebits with some locks.
func randomCreds(r *rand.Rand) Creds {
	ids := func() [4]uint32 {
		var out [4]uint32
		for i := range out {
			out[i] = []uint32{0, 1000, 1001}[r.IntN(3)]
		}
		return out
	}
	set := func() uint64 {
		switch r.IntN(4) {
		case 0:
			return 0
		case 1:
			return allCaps &^ (1 << r.IntN(modelLastCap+1))
		default:
			return r.Uint64() & allCaps
		}
	}
	c := Creds{Uid: ids(), Gid: ids(), CapPrm: set(), CapInh: set(), CapBnd: set()}
	c.CapEff = c.CapPrm & set()
	c.CapAmb = c.CapPrm & c.CapInh & set()
	c.Secbits = uint32(r.Uint64()) & modelSecbits
	if r.IntN(2) == 0 {
		c.Secbits &^= secbitLocks
	}
	c.NoNewPrivs = r.IntN(2) == 0
	if r.IntN(2) == 0 {
		c.Groups = []uint32{uint32(r.IntN(3)), 27}
	}
	return c
}

// TestCompare names the field that differs.
func TestCompare(t *testing.T) {
	a := sampleCreds()
	if err := Compare(a, a); err != nil {
		t.Fatal(err)
	}
	b := a
	b.CapBnd &^= 1
	if err := Compare(a, b); err == nil || !strings.Contains(err.Error(), "CapBnd is 000001fffffffffe, want 000001ffffffffff") {
		t.Errorf("err = %v", err)
	}
	b = a
	b.Groups = []uint32{4}
	if err := Compare(a, b); err == nil || !strings.Contains(err.Error(), "Groups") {
		t.Errorf("err = %v", err)
	}
	b = a
	b.Secbits = 0
	if err := Compare(a, b); err != nil {
		t.Errorf("securebits compared: %v", err)
	}
}
