package cgroups

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestDumpProp reads properties as CRIU saves them, from files standing
// in for a cgroup's.
func TestDumpProp(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"pids.max":              "max\n",
		"memory.limit_in_bytes": "9223372036854775807\n",
		"memory.oom_control":    "oom_kill_disable 1\nunder_oom 0\n",
		"cgroup.procs":          "12\n13\n",
		"devices.list":          strings.Repeat("c 1:3 rwm\n", 300), // longer than a first read
	}
	want := map[string]string{"pids.max": "max", "memory.limit_in_bytes": "-1", "memory.oom_control": "1", "cgroup.procs": "",
		"devices.list": strings.TrimSpace(files["devices.list"])}
	for name, v := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
		e, err := dumpProp(filepath.Join(dir, name), name)
		if err != nil {
			t.Fatal(err)
		}
		if e.GetValue() != want[name] || e.GetPerms().GetMode()&0o777 != 0o644 {
			t.Errorf("%s: value %q mode %o, want %q 644", name, e.GetValue(), e.GetPerms().GetMode(), want[name])
		}
	}
	// A property this kernel lacks is left out by dumpDir.
	if _, err := dumpProp(filepath.Join(dir, "cpu.shares"), "cpu.shares"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a missing property: %v, want an error of a file not there", err)
	}
}

// TestWriteValue writes the properties that need more than one write.
func TestWriteValue(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"devices.deny", "devices.allow", "cgroup.subtree_control", "cgroup.type"} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A file written twice keeps the last value: check each write by
	// the final contents and the call's error.
	if err := writeValue(dir, "devices.list", "c 1:3 rwm\nc 1:5 rwm\n"); err != nil {
		t.Fatal(err)
	}
	for f, want := range map[string]string{"devices.deny": "a", "devices.allow": "c 1:5 rwm"} {
		b, _ := os.ReadFile(filepath.Join(dir, f))
		if string(b) != want {
			t.Errorf("%s = %q, want %q", f, b, want)
		}
	}
	if err := writeValue(dir, "cgroup.subtree_control", "cpu memory"); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "cgroup.subtree_control")); string(b) != "+cpu +memory" {
		t.Errorf("cgroup.subtree_control = %q", b)
	}
	if err := writeValue(dir, "cgroup.type", "domain"); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "cgroup.type")); len(b) != 0 {
		t.Errorf("cgroup.type written %q: only threaded is written", b)
	}
	if err := writeValue(dir, "pids.max", "5"); err == nil {
		t.Error("a write into a missing property file succeeded")
	}
}

func TestPropsOf(t *testing.T) {
	got := propsOf("cpu,cpuacct")
	if !slices.Contains(got, "cpu.shares") || !slices.Contains(got, "tasks") || slices.Contains(got, "cgroup.type") {
		t.Errorf("props of cpu,cpuacct: %v", got)
	}
	if got := propsOf(""); !slices.Equal(got, globalPropsV2) {
		t.Errorf("props of v2: %v", got)
	}
	if got := propsOf("memory"); slices.Index(got, "memory.limit_in_bytes") > slices.Index(got, "memory.memsw.limit_in_bytes") {
		t.Errorf("memory.limit_in_bytes must come before memsw: %v", got)
	}
}
