package dump

import (
	"fmt"
	"maps"

	"amber/internal/fsroot"
	"amber/internal/mounts"
	"amber/internal/namespaces"
	"amber/internal/proc"
)

// namespaces reads the namespaces of the tree; when its root is the
// init of a pid namespace of its own, the images hold that namespace's
// PIDs from then on (d.pids).
func (d *dumper) namespaces(tree *frozenTree) (*namespaces.Table, error) {
	ns, err := namespaces.NewTable(tree.procs[0].pid, d.log.Warnf)
	if err != nil {
		return nil, err
	}
	d.users = ns.UserMaps()
	d.fds.SetUserMaps(d.users)
	if d.users != nil {
		d.log.Infof("pid %d is in a user namespace of its own (uid_map %q, gid_map %q): the images hold its ids", tree.procs[0].pid, d.users.Uid.String(), d.users.Gid.String())
	}
	ns.SetEmptyNet(d.opts.EmptyNet)
	d.fds.SetNsLookup(ns.FileID)
	ns.SetExtNet(d.opts.ExtNet)
	if err := ns.AddTasks(tree.livePids()); err != nil {
		return nil, err
	}
	if _, ok := ns.Own(namespaces.Mnt); ok {
		// The tree's paths are relative to its root, on the mounts of
		// its namespaces.
		ids := map[int]bool{}
		for _, m := range ns.MntNamespaces() {
			these, err := mounts.IDs(m.Pid)
			if err != nil {
				return nil, err
			}
			maps.Copy(ids, these)
		}
		root, err := fsroot.Of(tree.procs[0].pid)
		if err != nil {
			return nil, err
		}
		d.files.SetRoot(root, ids)
		var pids []int
		for _, m := range ns.MntNamespaces() {
			pids = append(pids, m.Pid)
		}
		if err := d.files.SetNamespaceRoots(pids); err != nil {
			return nil, err
		}
	}
	if !ns.OwnPidNamespace() {
		return ns, err
	}
	if d.pids, err = newPidMap(tree); err != nil {
		return nil, err
	}
	d.log.Infof("pid %d is the init of its own pid namespace: the images hold that namespace's pids", tree.procs[0].pid)
	d.fds.SetPidMap(d.pids.of)
	return ns, nil
}

// pidMap translates the PIDs amber sees into those of the tree's own pid
// namespace, which the images hold when the root is the namespace's init
// (namespaces.Table.OwnPidNamespace): pstree.img and the names of the
// per-task images. A nil pidMap leaves PIDs as they are.
type pidMap struct {
	ids       map[int]int // PID or TID -> the namespace's
	pgid, sid map[int]int // PID -> the namespace's process group and session
}

// newPidMap reads the namespace PIDs of every task of the tree from
// /proc/PID/task/TID/status (the last of NSpid, NSpgid, NSsid: the
// innermost namespace, the tree's).
func newPidMap(tree *frozenTree) (*pidMap, error) {
	m := &pidMap{ids: map[int]int{}, pgid: map[int]int{}, sid: map[int]int{}}
	for _, p := range tree.procs {
		st, err := proc.ReadStatus(p.pid)
		if err != nil {
			return nil, fmt.Errorf("pid %d: %w", p.pid, err)
		}
		if len(st.NSpid) == 0 || len(st.NSpgid) != len(st.NSpid) || len(st.NSsid) != len(st.NSpid) {
			return nil, fmt.Errorf("pid %d: /proc/%d/status has no namespace pids", p.pid, p.pid)
		}
		m.ids[p.pid] = innermost(st.NSpid)
		m.pgid[p.pid], m.sid[p.pid] = innermost(st.NSpgid), innermost(st.NSsid)
		// The kernel shows 0 for a group or session whose leader is
		// outside the namespace: nothing in it could make it again.
		if m.sid[p.pid] == 0 || m.pgid[p.pid] == 0 {
			return nil, fmt.Errorf("pid %d: its session (%d) or process group (%d) is led from outside its pid namespace: "+
				"not supported (start the namespace's init with setsid)", p.pid, p.stat.Session, p.stat.Pgrp)
		}
		for _, th := range p.threads[min(1, len(p.threads)):] {
			ts, err := proc.ReadTaskStatus(p.pid, th.Pid)
			if err != nil {
				return nil, fmt.Errorf("thread %d of pid %d: %w", th.Pid, p.pid, err)
			}
			if len(ts.NSpid) == 0 {
				return nil, fmt.Errorf("thread %d of pid %d: no namespace pids", th.Pid, p.pid)
			}
			m.ids[th.Pid] = innermost(ts.NSpid)
		}
	}
	return m, nil
}

func innermost(ids []int) int { return ids[len(ids)-1] }

// of is the namespace's PID of pid.
func (m *pidMap) of(pid int) int {
	if m == nil {
		return pid
	}
	if v, ok := m.ids[pid]; ok {
		return v
	}
	return pid
}

// groups are the namespace's process group and session of process p.
func (m *pidMap) groups(p *frozenProc) (pgid, sid int) {
	if m == nil {
		return p.stat.Pgrp, p.stat.Session
	}
	return m.pgid[p.pid], m.sid[p.pid]
}
