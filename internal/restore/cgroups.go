package restore

// The tree's cgroups, restored by internal/cgroups: made before the
// first task, each process moved in as it is made, properties set once
// all are restored.

import (
	"fmt"

	criucore "github.com/checkpoint-restore/go-criu/v8/crit/images/criu-core"

	"amber/internal/cgroups"
)

// prepareCgroups plans the cgroups of cgroup.img and makes those
// missing; nil without cgroups to restore or with
// --manage-cgroups=ignore.
func prepareCgroups(tree *treeImages, opts Options) (*cgroups.Restorer, error) {
	if opts.ManageCgroups == cgroups.Ignore {
		return nil, nil
	}
	e, err := cgroups.Read(tree.dir)
	if err != nil || e == nil {
		return nil, err
	}
	p, err := cgroups.NewPlan(e, opts.CgroupRoots)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", tree.dir.CgroupPath(), err)
	}
	opts.Log.Infof("cgroups: %d sets, %d directories (--manage-cgroups=%s)", len(p.Sets), len(p.Dirs), opts.ManageCgroups)
	return cgroups.Prepare(p, opts.ManageCgroups, tree.rootCgSet, opts.CgroupYard)
}

// parentCgSet is the cgroup set t inherits when it is made: that of the
// process it is a copy of (its parent, or the source of the helper that
// adopts it), or for the root the restorer's own (the dumper's set in
// the images).
func (tree *treeImages) parentCgSet(t *taskImages) uint32 {
	src := t.node.Source()
	if src == nil {
		return 0
	}
	return cgSet(tree.byPid[src.Pid].core)
}

// cgSet is the cgroup set of the process whose core is core: its
// task core's cg_set, or its leader's thread core's, where CRIU 4.x
// writes it alone.
func cgSet(core *criucore.CoreEntry) uint32 {
	if tc := core.GetTc(); tc != nil && tc.CgSet != nil {
		return tc.GetCgSet()
	}
	return core.GetThreadCore().GetCgSet()
}
