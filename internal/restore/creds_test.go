package restore

import (
	"slices"
	"strings"
	"testing"

	criucore "github.com/checkpoint-restore/go-criu/v8/crit/images/criu-core"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/creds"
	"amber/internal/plan"
)

const (
	capKill        = 5
	capSysResource = 24
	// amberCaps are amber's capabilities on the test machines.
	amberCaps = (1<<41 - 1) &^ (1 << capSysResource)
)

// withThread gives im's process a second thread, tid testPid+1, with c,
// and the leader leader's credentials.
func withThread(im *images, leader, c creds.Creds) {
	im.t.core.ThreadCore.Creds = creds.ToImage(leader)
	im.t.core.ThreadCore.PdeathSig = proto.Uint32(uint32(unix.SIGUSR1))
	core := &criucore.CoreEntry{
		Mtype:      criucore.CoreEntry_X86_64.Enum(),
		ThreadCore: &criucore.ThreadCoreEntry{BlkSigset: proto.Uint64(0), Creds: creds.ToImage(c)},
	}
	im.t.threads = append(im.t.threads, threadImages{tid: testPid + 1, core: core})
}

func amberHost(im *images) *host {
	h := im.host()
	h.creds = creds.Creds{CapPrm: amberCaps, CapEff: amberCaps, CapBnd: amberCaps}
	return h
}

// TestPlanTaskThreadCreds: each thread gets its own credentials in its
// own section, from those it starts with (amber's), and its parent death
// signal after them (changing them clears it).
func TestPlanTaskThreadCreds(t *testing.T) {
	im := newImages()
	leader := creds.Creds{Uid: [4]uint32{1000, 1000, 1000, 1000}, CapBnd: amberCaps}
	other := creds.Creds{CapPrm: 1 << capKill, CapEff: 1 << capKill, CapBnd: amberCaps, Secbits: creds.SecbitKeepCaps}
	withThread(im, leader, other)
	p, err := planTask(im.t, amberHost(im), &origin{current: stub()})
	if err != nil {
		t.Fatal(err)
	}
	first := section(t, p.prog, threadSection(testPid))
	second := section(t, p.prog, threadSection(testPid+1))
	setresuid := slices.IndexFunc(first, func(c plan.Call) bool { return c.Nr == unix.SYS_SETRESUID })
	pdeath := slices.IndexFunc(first, func(c plan.Call) bool {
		return c.Nr == unix.SYS_PRCTL && c.Args[0] == unix.PR_SET_PDEATHSIG
	})
	if setresuid < 0 || pdeath < setresuid || first[pdeath].Args[1] != uint64(unix.SIGUSR1) {
		t.Errorf("leader: setresuid at %d, parent death signal at %d:\n%v", setresuid, pdeath, first)
	}
	if slices.ContainsFunc(second, func(c plan.Call) bool { return c.Nr == unix.SYS_SETRESUID }) {
		t.Errorf("second thread changes its uid:\n%v", second)
	}
	var secbits []uint64
	for _, c := range second {
		if c.Nr == unix.SYS_PRCTL && c.Args[0] == unix.PR_SET_SECUREBITS {
			secbits = append(secbits, c.Args[1])
		}
	}
	if !slices.Equal(secbits, []uint64{creds.SecbitKeepCaps}) {
		t.Errorf("second thread sets securebits %#x, want its own only", secbits)
	}
	if got := p.creds[testPid+1]; got.CapPrm != 1<<capKill || got.Secbits != creds.SecbitKeepCaps {
		t.Errorf("second thread expected to end with %+v", got)
	}
	if got := p.creds[testPid]; got.Uid != leader.Uid || got.CapPrm != 0 {
		t.Errorf("leader expected to end with %+v", got)
	}
}

// TestPlanTaskCredsRefused names the thread and the capability amber
// cannot grant.
func TestPlanTaskCredsRefused(t *testing.T) {
	im := newImages()
	sysRes := uint64(1 << capSysResource)
	withThread(im, creds.Creds{}, creds.Creds{CapPrm: sysRes, CapEff: sysRes})
	_, err := planTask(im.t, amberHost(im), &origin{current: stub()})
	if err == nil || !strings.Contains(err.Error(), "thread 4322") || !strings.Contains(err.Error(), "permitted CAP_SYS_RESOURCE") {
		t.Errorf("err = %v, want one naming thread 4322 and CAP_SYS_RESOURCE", err)
	}
}

// TestPlanTaskDumpable sets the dumpable flag in the final section, once
// every thread has its credentials; 2 (SUID_DUMP_ROOT) becomes 0.
func TestPlanTaskDumpable(t *testing.T) {
	for _, c := range []struct {
		image, want int32
		warn        bool
	}{{0, 0, false}, {1, 1, false}, {2, 0, true}} {
		im := newImages()
		im.t.mm.Dumpable = proto.Int32(c.image)
		p := planRoot(t, im)
		fin := section(t, p.prog, sectionFinal)
		i := slices.IndexFunc(fin, func(call plan.Call) bool {
			return call.Nr == unix.SYS_PRCTL && call.Args[0] == unix.PR_SET_DUMPABLE
		})
		if i < 0 || fin[i].Args[1] != uint64(c.want) {
			t.Errorf("dumpable %d: final section %v, want PR_SET_DUMPABLE %d", c.image, fin, c.want)
		}
		warned := slices.ContainsFunc(p.warnings, func(w string) bool { return strings.Contains(w, "dumpable") })
		if warned != c.warn {
			t.Errorf("dumpable %d: warnings %q", c.image, p.warnings)
		}
	}
}
