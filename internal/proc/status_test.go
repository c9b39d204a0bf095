package proc

import (
	"errors"
	"io/fs"
	"os"
	"reflect"
	"strings"
	"testing"
)

// statusSample is captured from Linux 6.18 for a task that named itself
// "we\\ird\nname\t!" with prctl(PR_SET_NAME); the kernel escapes only the
// newline and the backslash.
const statusSample = `Name:	we\\ird\nname	!
Umask:	0022
State:	S (sleeping)
Tgid:	3869
Ngid:	0
Pid:	3870
PPid:	3866
TracerPid:	12
Uid:	1000	1001	1002	1003
Gid:	2000	2001	2002	2003
FDSize:	256
Groups:	4 24 27 
NStgid:	3869	1
NSpid:	3870	2
NSpgid:	3866	0
NSsid:	3151	0
Kthread:	0
VmPeak:	    3060 kB
VmSize:	    3060 kB
Threads:	2
SigQ:	0/96365
SigPnd:	0000000000000100
ShdPnd:	0000000000004000
SigBlk:	fffffffe7ffbfeff
SigIgn:	0000000000001000
SigCgt:	0000000180000002
CapInh:	0000000000000000
CapPrm:	000001fffeffffff
CapEff:	000001fffeffffff
CapBnd:	000001ffffffffff
CapAmb:	0000000000000400
NoNewPrivs:	1
Seccomp:	2
Seccomp_filters:	1
Speculation_Store_Bypass:	vulnerable
Cpus_allowed:	3
Cpus_allowed_list:	0-1
voluntary_ctxt_switches:	0
nonvoluntary_ctxt_switches:	0
`

func TestParseStatusSample(t *testing.T) {
	s, err := ParseStatus(strings.NewReader(statusSample))
	if err != nil {
		t.Fatal(err)
	}
	want := Status{
		Name: "we\\ird\nname\t!", Umask: 0o22, HasUmask: true, State: 'S',
		Tgid: 3869, Pid: 3870, PPid: 3866, TracerPid: 12,
		Uid: [4]uint32{1000, 1001, 1002, 1003}, Gid: [4]uint32{2000, 2001, 2002, 2003},
		Groups: []uint32{4, 24, 27},
		NSpid:  []int{3870, 2}, NStgid: []int{3869, 1}, NSpgid: []int{3866, 0}, NSsid: []int{3151, 0},
		Threads: 2,
		SigPnd:  0x100, ShdPnd: 0x4000, SigBlk: 0xfffffffe7ffbfeff, SigIgn: 0x1000, SigCgt: 0x180000002,
		CapPrm: 0x1fffeffffff, CapEff: 0x1fffeffffff, CapBnd: 0x1ffffffffff, CapAmb: 0x400,
		NoNewPrivs: 1, Seccomp: 2,
	}
	if !reflect.DeepEqual(s, want) {
		t.Errorf("got\n%+v\nwant\n%+v", s, want)
	}
}

// TestParseStatusOldKernel drops the lines newer kernels added: they
// read as zero, and HasUmask says Umask was absent.
func TestParseStatusOldKernel(t *testing.T) {
	var kept []string
	for _, line := range strings.SplitAfter(statusSample, "\n") {
		key, _, _ := strings.Cut(line, ":")
		switch key {
		case "Umask", "NSpid", "NStgid", "NSpgid", "NSsid", "CapAmb", "NoNewPrivs", "Seccomp":
		default:
			kept = append(kept, line)
		}
	}
	s, err := ParseStatus(strings.NewReader(strings.Join(kept, "")))
	if err != nil {
		t.Fatal(err)
	}
	if s.HasUmask || s.Umask != 0 || s.NSpid != nil || s.CapAmb != 0 || s.Seccomp != 0 || s.Pid != 3870 {
		t.Errorf("got %+v", s)
	}
}

func TestParseStatusErrors(t *testing.T) {
	replace := func(old, new string) string { return strings.Replace(statusSample, old, new, 1) }
	for _, tc := range []struct{ text, want string }{
		{replace("CapBnd:\t000001ffffffffff\n", ""), `no "CapBnd:" line`},
		{replace("Uid:\t1000\t1001\t1002\t1003", "Uid:\t1000\t1001"), "line 9: Uid: 2 ids, want 4"},
		{replace("SigBlk:\tfffffffe7ffbfeff", "SigBlk:\tzz"), "line 24: SigBlk: "},
		{replace("Umask:\t0022", "Umask:\t0099"), "line 2: Umask: "},
		{replace("Tgid:\t3869", "Tgid 3869"), "line 4: "},
		{replace("State:\tS (sleeping)", "State:"), "line 3: State: "},
	} {
		_, err := ParseStatus(strings.NewReader(tc.text))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("got %v, want error containing %q", err, tc.want)
		}
	}
}

func TestUnescapeName(t *testing.T) {
	for in, want := range map[string]string{
		"plain":      "plain",
		"a\\nb":      "a\nb",   // escaped newline
		"a\\\\nb":    "a\\nb",  // escaped backslash, then 'n'
		"a\\\\\\nb":  "a\\\nb", // escaped backslash, escaped newline
		"tab\tstays": "tab\tstays",
	} {
		if got := unescapeName(in); got != want {
			t.Errorf("unescapeName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestReadStatusSelf(t *testing.T) {
	s, err := ReadStatus(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if s.Pid != os.Getpid() || s.Tgid != os.Getpid() || s.PPid != os.Getppid() || s.Threads < 1 {
		t.Errorf("ids: %+v", s)
	}
	if s.Uid[0] != uint32(os.Getuid()) || s.Uid[1] != uint32(os.Geteuid()) ||
		s.Gid[0] != uint32(os.Getgid()) || s.Gid[1] != uint32(os.Getegid()) {
		t.Errorf("creds: uid %v gid %v", s.Uid, s.Gid)
	}
	groups, err := os.Getgroups()
	if err != nil {
		t.Fatal(err)
	}
	if len(groups) != len(s.Groups) {
		t.Errorf("Groups = %v, want %v", s.Groups, groups)
	}
	if len(s.NSpid) > 0 && s.NSpid[len(s.NSpid)-1] == 0 {
		t.Errorf("NSpid = %v", s.NSpid)
	}
}

func TestReadStatusNoProcess(t *testing.T) {
	if _, err := ReadStatus(noSuchPid); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadStatus(no such pid) = %v, want fs.ErrNotExist", err)
	}
}

func FuzzParseStatus(f *testing.F) {
	f.Add(statusSample)
	f.Add("Name:\t\\\\\\n\\\n")
	f.Fuzz(func(t *testing.T, text string) {
		ParseStatus(strings.NewReader(text))
	})
}
