package kerndat

import (
	"errors"
	"os"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"amber/internal/uffd"
)

// iowr is the kernel's _IOWR(typ, nr, size) on x86-64.
func iowr(typ, nr byte, size uintptr) uint64 {
	return 3<<30 | uint64(size)<<16 | uint64(typ)<<8 | uint64(nr)
}

func TestIoctlNumbers(t *testing.T) {
	if got := iowr('f', 16, unsafe.Sizeof(pmScanArg{})); got != pagemapScan {
		t.Errorf("PAGEMAP_SCAN = %#x, computed %#x", pagemapScan, got)
	}
	if s := unsafe.Sizeof(pmScanArg{}); s != 96 {
		t.Errorf("sizeof(pm_scan_arg) = %d, want 96", s)
	}
	if s := unsafe.Sizeof(cloneArgs{}); s != 80 {
		t.Errorf("sizeof(clone_args) up to set_tid_size = %d, want 80 (CLONE_ARGS_SIZE_VER1)", s)
	}
}

// TestProbeHere checks the probes against what this machine is known to
// have (kernel 6.18, root): everything except soft-dirty.
func TestProbeHere(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: map_files and capabilities differ otherwise")
	}
	info := Probe()
	t.Logf("kernel %s, uffd features %#x", info.Kernel, info.UffdFeatures)
	for _, f := range info.Features() {
		t.Log(f.Line())
		if f.Name == "soft_dirty" {
			continue
		}
		if !f.Present {
			t.Errorf("%s missing: %v", f.Name, f.Err)
		}
	}
	if len(info.Missing()) != 0 {
		t.Errorf("Missing() = %v, want none", info.Missing())
	}
}

// TestProbeSoftDirty: this kernel has no CONFIG_MEM_SOFT_DIRTY. The probe
// must say so with a reason, not fail silently.
func TestProbeSoftDirty(t *testing.T) {
	s := ProbeSoftDirty()
	if s.Present {
		t.Skip("this kernel has soft-dirty; the machine is not the one the design describes")
	}
	if s.Err == nil || !strings.Contains(s.Err.Error(), "soft-dirty") {
		t.Errorf("soft-dirty missing without a reason: %v", s.Err)
	}
}

// TestProbeLeavesNothing: no descriptor and no child outlive Probe.
func TestProbeLeavesNothing(t *testing.T) {
	before := openFDs(t)
	Probe()
	if after := openFDs(t); after != before {
		t.Errorf("open descriptors: %d before Probe, %d after", before, after)
	}
	var ws unix.WaitStatus
	if pid, err := unix.Wait4(-1, &ws, unix.WNOHANG|unix.WALL, nil); !errors.Is(err, unix.ECHILD) {
		t.Errorf("a child is left after Probe: wait4 = %d, %v", pid, err)
	}
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func TestProbeEachDirectly(t *testing.T) {
	probes := map[string]func() Status{
		"clone3_set_tid":   probeClone3SetTID,
		"process_vm_readv": probeProcessVMReadv,
		"pagemap_scan":     probePagemapScan,
		"map_files":        probeMapFiles,
		"checkpoint_cap":   probeCaps,
		"populate_write":   ProbePopulateWrite,
		"timerfd":          probeTimerfd,
		"ns_pid":           probeNSpid,
		"loginuid":         probeLoginuid,
		"kcmp_epoll":       probeKcmpEpoll,
		"timer_cr_ids":     ProbeTimerIDs,
		"guard pages":      probeGuardPages,
	}
	for name, probe := range probes {
		if s := probe(); !s.Present {
			t.Errorf("%s: %v", name, s.Err)
		}
	}
	pt := probePtrace()
	if !pt.seize.Present || !pt.rseq.Present || !pt.seccompSuspend.Present || !pt.seccompFilters.Present {
		t.Errorf("ptrace: seize %v, rseq %v, seccomp suspend %v, seccomp filters %v",
			pt.seize.Err, pt.rseq.Err, pt.seccompSuspend.Err, pt.seccompFilters.Err)
	}
	open, getfd := probePidfd()
	if !open.Present || !getfd.Present {
		t.Errorf("pidfd: open %v, getfd %v", open.Err, getfd.Err)
	}
	uf, features := probeUserfaultfd()
	if !uf.Present || features&uffd.FeatureWPAsync == 0 {
		t.Errorf("userfaultfd: %v, features %#x", uf.Err, features)
	}
}

// fakeInfo has every feature present but soft-dirty and map_files.
func fakeInfo() *Info {
	p := present()
	return &Info{
		PtraceSeize: p, RseqConfig: p, SeccompSuspend: p, SeccompFilters: p, Clone3SetTID: p, PidfdOpen: p, PidfdGetfd: p,
		ProcessVMReadv: p, PagemapScan: p, Userfaultfd: p, UffdWPAsync: p,
		MapFiles:          missing("no map_files"),
		SoftDirty:         missing("no soft-dirty"),
		CheckpointCap:     p,
		FdinfoLock:        p,
		Timens:            p,
		Cgroupns:          p,
		Userns:            p,
		MoveMountSetGroup: p,
		PopulateWrite:     p,
		Timerfd:           p,
		NSpid:             p,
		Loginuid:          p,
		KcmpEpoll:         p,
		GuardPages:        p,
		UffdFeatures:      uffd.FeaturesNonCoop | uffd.FeatureWPAsync | uffd.FeatureWPUnpopulated,
	}
}

func TestCheckFeature(t *testing.T) {
	info := fakeInfo()
	tests := []struct {
		name string
		want error
	}{
		{"clone3_set_tid", nil},
		{"pagemap_scan", nil},
		{"uffd", nil},
		{"uffd-noncoop", nil},
		{"pidfd_store", nil},
		{"get_rseq_conf", nil},
		{"ptrace_seize", nil},
		{"seccomp_suspend", nil},
		{"seccomp_filters", nil},
		{"fdinfo_lock", nil},
		{"mnt_id", nil},
		{"map_files", ErrMissing},
		{"soft_dirty", ErrMissing},
		{"userns", nil},
		{"mem_dirty_track", nil},
		{"timens", nil},
		{"cgroupns", nil},
		{"move_mount_set_group", nil},
		{"timerfd", nil},
		{"ns_pid", nil},
		{"loginuid", nil},
		{"kcmp_epoll", nil},
		{"pagemap_scan_guard_pages", nil},
		{"net_diag_raw", nil},
		{"no_such_feature", ErrUnknownFeature},
		{"", ErrUnknownFeature},
	}
	for _, tt := range tests {
		err := info.CheckFeature(tt.name)
		if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
			t.Errorf("CheckFeature(%q) = %v, want %v", tt.name, err, tt.want)
		}
		if err != nil && !strings.Contains(err.Error(), tt.name) {
			t.Errorf("CheckFeature(%q) = %q: does not name the feature", tt.name, err)
		}
	}
}

func TestCheckFeatureDerived(t *testing.T) {
	info := fakeInfo()
	info.UffdFeatures = uffd.FeatureWPAsync
	if err := info.CheckFeature("uffd-noncoop"); !errors.Is(err, ErrMissing) {
		t.Errorf("uffd-noncoop without events = %v, want ErrMissing", err)
	}
	if err := info.CheckFeature("mem_dirty_track"); !errors.Is(err, ErrMissing) {
		t.Errorf("mem_dirty_track without WP_UNPOPULATED = %v, want ErrMissing", err)
	}
	info.UffdFeatures |= uffd.FeatureWPUnpopulated
	info.PagemapScan = missing("ENOTTY")
	if err := info.CheckFeature("mem_dirty_track"); !errors.Is(err, ErrMissing) {
		t.Errorf("mem_dirty_track without PAGEMAP_SCAN = %v, want ErrMissing", err)
	}
	info.SoftDirty = present()
	if err := info.CheckFeature("mem_dirty_track"); err != nil {
		t.Errorf("mem_dirty_track with soft-dirty but without PAGEMAP_SCAN = %v, want nil", err)
	}
	info.SeccompSuspend = missing("EPERM")
	if err := info.CheckFeature("seccomp_filters"); !errors.Is(err, ErrMissing) {
		t.Errorf("seccomp_filters without seccomp_suspend = %v, want ErrMissing", err)
	}
	info.PidfdGetfd = missing("ENOSYS")
	if err := info.CheckFeature("pidfd_store"); !errors.Is(err, ErrMissing) {
		t.Errorf("pidfd_store without pidfd_getfd = %v, want ErrMissing", err)
	}
	info.Timens = missing("no /proc/self/timens_offsets")
	if err := info.CheckFeature("timens"); !errors.Is(err, ErrMissing) {
		t.Errorf("timens without timens_offsets = %v, want ErrMissing", err)
	}
	info.TCPRepair = present()
	if err := info.CheckFeature("tcp_half_closed"); err != nil {
		t.Errorf("tcp_half_closed with tcp_repair = %v, want nil", err)
	}
	info.TCPRepair = missing("EPERM")
	if err := info.CheckFeature("tcp_half_closed"); !errors.Is(err, ErrMissing) {
		t.Errorf("tcp_half_closed without tcp_repair = %v, want ErrMissing", err)
	}
}

func TestMissingAndLines(t *testing.T) {
	info := fakeInfo()
	if m := info.Missing(); len(m) != 0 {
		t.Errorf("optional features reported as missing: %v", m)
	}
	soft, _ := info.Lookup("soft_dirty")
	if line := soft.Line(); !strings.Contains(line, "missing (not needed where uffd_wp_async is present)") {
		t.Errorf("soft_dirty line = %q", line)
	}
	info.Clone3SetTID = missing("clone3: ENOSYS")
	m := info.Missing()
	if len(m) != 1 || m[0].Name != "clone3_set_tid" {
		t.Fatalf("Missing() = %v, want clone3_set_tid", m)
	}
	if line := m[0].Line(); !strings.Contains(line, "MISSING") || !strings.Contains(line, "ENOSYS") {
		t.Errorf("required missing line = %q", line)
	}
}

func TestCRIUFeatureNamesUnique(t *testing.T) {
	seen := map[string]bool{}
	for _, n := range criuFeatures() {
		if seen[n] {
			t.Errorf("duplicate CRIU feature %s", n)
		}
		seen[n] = true
	}
	for _, f := range fakeInfo().Features() {
		if strings.ContainsAny(f.Name, " /") || f.Desc == "" || !f.Required && f.IfMissing == "" {
			t.Errorf("feature %+v: needs a name, a description, and IfMissing when optional", f)
		}
	}
}

// TestProbeFdinfoLock: every kernel amber runs on (4.1+) lists file locks
// in fdinfo.
func TestProbeFdinfoLock(t *testing.T) {
	if s := probeFdinfoLock(); !s.Present {
		t.Errorf("fdinfo_lock: %v", s.Err)
	}
}

// TestProbeTimens: this machine's kernel (5.6+) has time namespaces, so
// `check --feature timens` says yes here.
func TestProbeTimens(t *testing.T) {
	if s := probeTimens(); !s.Present {
		t.Errorf("timens: %v", s.Err)
	}
}
