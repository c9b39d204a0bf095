package test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// setprivCases start caps_same under setpriv with the credentials of each
// case.
var setprivCases = []struct {
	name string
	args []string
}{
	// The task of issue 10: root with every capability dropped.
	{"nocaps", []string{"--inh-caps=-all", "--bounding-set=-all"}},
	// Root whose capabilities come from its ambient set only, securebits
	// locked, a narrower bounding set.
	{"securebits", []string{"--securebits=+noroot,+noroot_locked,+no_setuid_fixup,+no_setuid_fixup_locked,+keep_caps_locked",
		"--inh-caps=+net_raw,+kill", "--ambient-caps=+net_raw,+kill", "--bounding-set=-sys_admin,-setpcap"}},
	// Another user with groups, ambient capabilities and no_new_privs.
	{"user", []string{"--reuid=1000", "--regid=1000", "--groups=27,1000", "--nnp",
		"--inh-caps=+net_bind_service,+net_raw", "--ambient-caps=+net_bind_service,+net_raw"}},
}

// TestCapsSetpriv starts caps_same under setpriv: the credentials every
// thread shows in /proc/PID/task/TID/status (ids, groups, every capability
// set, no_new_privs) must be the same after restore as before the dump,
// and the program checks its securebits itself.
func TestCapsSetpriv(t *testing.T) {
	for _, tc := range setprivCases {
		t.Run(tc.name, func(t *testing.T) {
			c := startProgram(t, underSetpriv(tc.args...))
			before := credLines(t, c.pid)
			c.mustDump()
			c.mustRestoreDetached()
			if after := credLines(t, c.pid); !slices.Equal(after, before) {
				t.Errorf("credentials after restore:\n%s\nbefore the dump:\n%s", strings.Join(after, "\n"), strings.Join(before, "\n"))
			}
			c.mustPass()
		})
	}
}

// TestCapsNotGranted restores, with an amber lacking CAP_NET_ADMIN, a
// task that has it: amber cannot give it and must refuse, naming the pid
// and the capability, and leave nothing behind.
func TestCapsNotGranted(t *testing.T) {
	c := startCase(t, "caps_same")
	c.mustDump()
	r := c.restoreUnderSetpriv("--bounding-set=-net_admin")
	requireFailureNamingPid(t, r, c.pid)
	requireFailure(t, r, "CAP_NET_ADMIN")
	c.requireLive()
}

// TestCapsBoundingSetLost restores, with an amber whose bounding set
// lacks CAP_NET_ADMIN, a task of another user whose bounding set has it:
// the restore goes on (a bounding set only limits what a task may gain),
// says so in its log, and the task has everything else it had.
func TestCapsBoundingSetLost(t *testing.T) {
	const capNetAdmin = 12
	c := startProgram(t, underSetpriv(setprivCases[2].args...))
	before := credLines(t, c.pid)
	c.mustDump()
	if r := c.restoreUnderSetpriv("--bounding-set=-net_admin"); r.err != nil {
		t.Fatalf("restore failed: %v", r)
	}
	log, err := os.ReadFile(filepath.Join(c.images, "restore.log"))
	if err != nil || !strings.Contains(string(log), "bounding set restored without CAP_NET_ADMIN") {
		t.Errorf("restore.log does not warn of CAP_NET_ADMIN (%v)", err)
	}
	for i, line := range before {
		tid, rest, _ := strings.Cut(line, " ")
		if v, ok := strings.CutPrefix(rest, "CapBnd:\t"); ok {
			bnd, err := strconv.ParseUint(v, 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			before[i] = fmt.Sprintf("%s CapBnd:\t%016x", tid, bnd&^(1<<capNetAdmin))
		}
	}
	if after := credLines(t, c.pid); !slices.Equal(after, before) {
		t.Errorf("credentials after restore:\n%s\nwant:\n%s", strings.Join(after, "\n"), strings.Join(before, "\n"))
	}
}

// underSetpriv is caps_same run by setpriv with args.
func underSetpriv(args ...string) program {
	p, _ := lookupProgram("caps_same")
	p.under = append(append([]string{"/usr/bin/setpriv"}, args...), "--")
	return p
}

// restoreUnderSetpriv runs amber restore -d as setpriv with args runs it.
func (c *zcase) restoreUnderSetpriv(args ...string) amberResult {
	argv := append(append(args, "--", testEnv.amber), c.restoreArgs(c.pidfile(), "-d")...)
	r := runAmber("/usr/bin/setpriv", c.dir, program{}, argv...)
	c.results = append(c.results, r)
	return r
}

// credLines are the credential lines of /proc/PID/task/TID/status of
// every thread of pid, each prefixed with its TID.
func credLines(t *testing.T, pid int) []string {
	t.Helper()
	tids, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, tid := range tids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", pid, tid.Name()))
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			key, _, _ := strings.Cut(line, ":")
			switch key {
			case "Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs":
				out = append(out, tid.Name()+" "+line)
			}
		}
	}
	return out
}
