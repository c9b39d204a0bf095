package cgroups

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"slices"
	"strings"
)

// Member is a process's cgroup in one hierarchy: the hierarchy's
// controllers as /proc/PID/cgroup names them ("cpu,cpuacct",
// "name=systemd", "" for cgroup v2) and the cgroup's path from the
// hierarchy's root.
type Member struct {
	Name string
	Path string
}

// Set is a process's membership, one Member per hierarchy, in the
// order of Name.
type Set []Member

// equal tells whether two sets name the same cgroups.
func (s Set) equal(o Set) bool { return slices.Equal(s, o) }

// path is the set's path in hierarchy name, "" if it has none there.
func (s Set) path(name string) (string, bool) {
	for _, m := range s {
		if m.Name == name {
			return m.Path, true
		}
	}
	return "", false
}

// ReadSet reads the cgroups of process pid.
func ReadSet(pid int) (Set, error) {
	return readSet(fmt.Sprintf("/proc/%d/cgroup", pid))
}

// ReadThreadSet reads the cgroups of thread tid of process pid.
func ReadThreadSet(pid, tid int) (Set, error) {
	return readSet(fmt.Sprintf("/proc/%d/task/%d/cgroup", pid, tid))
}

// readSet reads a /proc cgroup file.
func readSet(path string) (Set, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s, err := parseSet(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// parseSet reads /proc/PID/cgroup's lines, "ID:controllers:path".
func parseSet(b []byte) (Set, error) {
	var s Set
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 || !strings.HasPrefix(f[2], "/") {
			return nil, fmt.Errorf("bad line %q", line)
		}
		s = append(s, Member{Name: f[1], Path: f[2]})
	}
	slices.SortFunc(s, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return s, sc.Err()
}

// cnames are the controllers of hierarchy name, as cgroup.img's
// cnames: "cpu,cpuacct" is two, cgroup v2 is the one name "".
func cnames(name string) []string { return strings.Split(name, ",") }

// sameHierarchy tells whether a controller entry's cnames are those of
// hierarchy name.
func sameHierarchy(names []string, name string) bool {
	a, b := slices.Clone(names), cnames(name)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
