package dump

// The tree's cgroups: its freezer (--freeze-cgroup) and its membership
// (--manage-cgroups), dumped by internal/cgroups.

import (
	"errors"
	"fmt"
	"time"

	criucore "github.com/checkpoint-restore/go-criu/v8/crit/images/criu-core"
	"google.golang.org/protobuf/proto"

	"amber/internal/cgroups"
	"amber/internal/compel"
	"amber/internal/namespaces"
	"amber/internal/proc"
)

// openCgroups starts collecting the tree's cgroups, unless
// --manage-cgroups=ignore.
func (d *dumper) openCgroups() error {
	if d.opts.ManageCgroups == cgroups.Ignore {
		return nil
	}
	var err error
	d.cg, err = cgroups.NewDumper(d.opts.CgroupYard)
	return err
}

// cgroupNamespace records the root of the tree's own cgroup namespace,
// if it has one: the root task's cgroups read from inside the namespace
// are relative to it.
func (d *dumper) cgroupNamespace(ns *namespaces.Table, root int) error {
	if _, ok := ns.Own(namespaces.Cgroup); !ok || d.cg == nil {
		return nil
	}
	full, err := cgroups.ReadSet(root)
	if err != nil {
		return fmt.Errorf("cgroups of pid %d: %w", root, err)
	}
	var rel cgroups.Set
	err = namespaces.InNamespace(root, namespaces.Cgroup, func() (err error) {
		rel, err = cgroups.ReadSet(root)
		return err
	})
	if err != nil {
		return fmt.Errorf("cgroups of pid %d in its cgroup namespace: %w", root, err)
	}
	if err := d.cg.SetNamespace(full, rel); err != nil {
		return fmt.Errorf("pid %d: %w", root, err)
	}
	return nil
}

// cgroupsOf records the cgroups of process pid in its leader's core's
// cg_set, and each thread's, which may differ, in its thread core's:
// cores are in the order of tids.
func (d *dumper) cgroupsOf(pid int, tids []int, cores []*criucore.CoreEntry) error {
	if d.cg == nil {
		return nil
	}
	id, err := d.cg.Add(pid)
	if err != nil {
		return err
	}
	cores[0].Tc.CgSet = proto.Uint32(id)
	for i, tid := range tids {
		if id, err = d.cg.AddThread(pid, tid); err != nil {
			return err
		}
		cores[i].ThreadCore.CgSet = proto.Uint32(id)
	}
	return nil
}

// seizeFrozen freezes the cgroup of --freeze-cgroup, seizes every
// thread of the tree rooted at root while nothing in it can fork or
// clone, and thaws the cgroup: the threads then stop for amber, which
// freezeTree waits for. Without --freeze-cgroup it seizes nothing. On
// failure the cgroup is thawed and every thread let go.
func (d *dumper) seizeFrozen(root int) (map[int]*compel.Task, error) {
	if d.opts.FreezeCgroup == "" {
		return nil, nil
	}
	f, err := cgroups.NewFreezer(d.opts.FreezeCgroup)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	if err := f.Freeze(d.opts.Timeout); err != nil {
		return nil, err
	}
	frozen := time.Since(start)
	seized := map[int]*compel.Task{}
	serr := seizeAll(root, d.opts.Timeout, seized)
	if err := f.Thaw(); err != nil {
		serr = errors.Join(serr, err)
	}
	if serr != nil {
		(&frozenTree{seized: seized}).detachSeized()
		return nil, serr
	}
	d.log.Infof("cgroup %s frozen in %v, %d threads seized in %v", f.Dir(), frozen, len(seized), time.Since(start))
	return seized, nil
}

// seizeAll seizes every thread of the processes of the tree rooted at
// root, frozen by their cgroup, into seized.
func seizeAll(root int, timeout time.Duration, seized map[int]*compel.Task) error {
	queue := []int{root}
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		if st, err := proc.ReadStat(pid); err != nil || st.State == 'Z' {
			continue // gone, or a zombie: freezeTree sees to it
		}
		tids, err := proc.Threads(pid)
		if err != nil {
			return fmt.Errorf("pid %d: %w", pid, err)
		}
		for _, tid := range tids {
			task, err := compel.Attach(tid, timeout)
			if err != nil {
				if exited(tid) {
					continue
				}
				return explainSeize(pid, tid, err)
			}
			seized[tid] = task
		}
		kids, err := proc.Children(pid)
		if err != nil {
			return fmt.Errorf("pid %d: %w", pid, err)
		}
		queue = append(queue, kids...)
	}
	return nil
}
