package cgroups

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Freezer freezes the tasks of one cgroup and its descendants with the
// cgroup freezer: v1's freezer.state, or v2's cgroup.freeze.
type Freezer struct {
	dir string
	v2  bool
}

// NewFreezer opens the freezer of the cgroup directory dir
// (/sys/fs/cgroup/freezer/ID on v1, a cgroup v2 directory).
func NewFreezer(dir string) (*Freezer, error) {
	if _, err := os.Stat(filepath.Join(dir, "freezer.state")); err == nil {
		return &Freezer{dir: dir}, nil
	}
	if _, err := os.Stat(filepath.Join(dir, "cgroup.freeze")); err == nil {
		return &Freezer{dir: dir, v2: true}, nil
	}
	return nil, fmt.Errorf("--freeze-cgroup %s: neither freezer.state (v1) nor cgroup.freeze (v2) is there", dir)
}

// Dir is the freezer's cgroup directory.
func (f *Freezer) Dir() string { return f.dir }

// Freeze freezes the cgroup and waits, at most timeout, until every
// task in it is frozen. On failure it is thawed again.
func (f *Freezer) Freeze(timeout time.Duration) error {
	ctl, val := "freezer.state", "FROZEN"
	if f.v2 {
		ctl, val = "cgroup.freeze", "1"
	}
	if err := writeExisting(filepath.Join(f.dir, ctl), []byte(val)); err != nil {
		return fmt.Errorf("freeze %s: %w", f.dir, err)
	}
	err := poll(timeout, f.frozen)
	if err != nil {
		return errors.Join(fmt.Errorf("freeze %s: %w", f.dir, err), f.Thaw())
	}
	return nil
}

// poll calls done until it says yes, first at once, then sleeping 50
// µs, doubling to at most 5 ms between calls, until timeout.
func poll(timeout time.Duration, done func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for wait := 50 * time.Microsecond; ; wait = min(2*wait, 5*time.Millisecond) {
		ok, err := done()
		if ok || err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("tasks still not frozen after %v", timeout)
		}
		time.Sleep(wait)
	}
}

// frozen tells whether every task of the cgroup is frozen: v1's state
// reads FROZEN (not FREEZING), v2's cgroup.events says frozen 1.
func (f *Freezer) frozen() (bool, error) {
	if !f.v2 {
		b, err := os.ReadFile(filepath.Join(f.dir, "freezer.state"))
		return strings.TrimSpace(string(b)) == "FROZEN", err
	}
	b, err := os.ReadFile(filepath.Join(f.dir, "cgroup.events"))
	if err != nil {
		return false, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if l == "frozen 1" {
			return true, nil
		}
	}
	return false, nil
}

// Thaw lets the cgroup's tasks run again.
func (f *Freezer) Thaw() error {
	ctl, val := "freezer.state", "THAWED"
	if f.v2 {
		ctl, val = "cgroup.freeze", "0"
	}
	if err := writeExisting(filepath.Join(f.dir, ctl), []byte(val)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("thaw %s: %w", f.dir, err)
	}
	return nil
}
