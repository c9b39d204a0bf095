package test

import (
	"os"
	"os/exec"
	"testing"
)

// inCI reports whether the tests run in CI (.ci/run sets CI=true): there
// everything the tests need is installed, and a test that skips itself
// for want of a tool or of root hides a broken setup.
func inCI() bool {
	v := os.Getenv("CI")
	return v != "" && v != "false" && v != "0"
}

// missing skips t for a reason outside the test's control (not root, a
// tool not installed) or, in CI, fails it.
func missing(t testing.TB, why string) {
	t.Helper()
	if inCI() {
		t.Fatalf("%s (CI is set: every tool the tests use must be installed)", why)
		return
	}
	t.Skip(why)
}

// critCommand is the argv that runs Debian's crit (package criu) with
// Debian's python and its protobuf module; missing (see above) if either
// is not installed.
func critCommand(t testing.TB) []string {
	t.Helper()
	const hint = ": apt-get install criu python3-protobuf"
	if _, err := os.Stat("/usr/bin/crit"); err != nil {
		missing(t, "crit not installed"+hint)
		return nil
	}
	if err := exec.Command("/usr/bin/python3", "-c", "import google.protobuf").Run(); err != nil {
		missing(t, "Debian's python3 cannot import protobuf, which crit needs"+hint)
		return nil
	}
	return []string{"/usr/bin/python3", "/usr/bin/crit"}
}

// recordingTB is a testing.TB that records a skip or a failure instead
// of ending the test.
type recordingTB struct {
	testing.TB
	failed, skipped bool
}

func (r *recordingTB) Helper()               {}
func (r *recordingTB) Fatalf(string, ...any) { r.failed = true }
func (r *recordingTB) Skip(...any)           { r.skipped = true }
func (r *recordingTB) Skipf(string, ...any)  { r.skipped = true }

// TestMissingFailsInCI: a missing tool skips a test on a developer's
// machine and fails it in CI.
func TestMissingFailsInCI(t *testing.T) {
	for _, tc := range []struct {
		ci         string
		fail, skip bool
	}{{"true", true, false}, {"1", true, false}, {"", false, true}, {"false", false, true}} {
		t.Setenv("CI", tc.ci)
		r := &recordingTB{TB: t}
		missing(r, "frobnicator not installed")
		if r.failed != tc.fail || r.skipped != tc.skip {
			t.Errorf("CI=%q: failed %v, skipped %v; want %v, %v", tc.ci, r.failed, r.skipped, tc.fail, tc.skip)
		}
	}
}
