package restore

import (
	"slices"
	"testing"

	criucore "github.com/checkpoint-restore/go-criu/v8/crit/images/criu-core"
	seccompimg "github.com/checkpoint-restore/go-criu/v8/crit/images/seccomp"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/creds"
	"amber/internal/plan"
	"amber/internal/seccomp"
)

// TestPlanTaskSeccomp: a thread installs its filters before its
// credentials, which here drop the CAP_SYS_ADMIN installing them needs;
// strict mode comes last of all in its thread's section.
func TestPlanTaskSeccomp(t *testing.T) {
	im := newImages()
	leader := creds.Creds{Uid: [4]uint32{1000, 1000, 1000, 1000}, CapBnd: amberCaps}
	withThread(im, leader, creds.Creds{CapBnd: amberCaps})
	im.t.threads[0].core.ThreadCore.SeccompMode = criucore.SeccompMode_filter.Enum()
	im.t.threads[0].core.ThreadCore.SeccompFilter = proto.Uint32(0)
	im.t.threads[1].core.ThreadCore.SeccompMode = criucore.SeccompMode_strict.Enum()
	filters := seccomp.FromEntry("seccomp.img", &seccompimg.SeccompEntry{SeccompFilters: []*seccompimg.SeccompFilter{
		{Filter: make([]byte, 16), Flags: proto.Uint32(unix.SECCOMP_FILTER_FLAG_LOG)},
	}})
	if err := im.t.loadSeccomp(filters); err != nil {
		t.Fatal(err)
	}
	p, err := planTask(im.t, amberHost(im), &origin{current: stub()})
	if err != nil {
		t.Fatal(err)
	}
	first := section(t, p.prog, threadSection(testPid))
	install := slices.IndexFunc(first, func(c plan.Call) bool {
		return c.Nr == unix.SYS_SECCOMP && c.Args[0] == unix.SECCOMP_SET_MODE_FILTER && c.Args[1] == unix.SECCOMP_FILTER_FLAG_LOG
	})
	setresuid := slices.IndexFunc(first, func(c plan.Call) bool { return c.Nr == unix.SYS_SETRESUID })
	if install < 0 || setresuid < install {
		t.Errorf("leader: filter installed at %d, credentials at %d:\n%v", install, setresuid, first)
	}
	second := section(t, p.prog, threadSection(testPid+1))
	if last := second[len(second)-1]; last.Nr != unix.SYS_SECCOMP || last.Args[0] != unix.SECCOMP_SET_MODE_STRICT {
		t.Errorf("strict thread's section ends with %v", last)
	}
	if slices.ContainsFunc(second[:len(second)-1], func(c plan.Call) bool { return c.Nr == unix.SYS_SECCOMP }) {
		t.Errorf("strict thread installs more:\n%v", second)
	}
	if !im.t.seccomp.Active() {
		t.Error("process under seccomp not active")
	}
}
