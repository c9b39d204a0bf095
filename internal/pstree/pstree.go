// Package pstree plans how a dumped process tree is made again: which
// task creates which, the helper tasks that stand in for session and
// process group leaders that are gone, and when each task calls setsid
// and setpgid. It reads pstree.img's entries and says what to do, with
// no process in sight; package restore does it.
//
// A session can only be had by calling setsid (then the caller leads it)
// or by being forked into it, and a process group can only be joined
// while some process of the same session is in it. The tree at dump may
// hold processes whose session leader is gone, is a zombie, or is not
// their ancestor any more (they were reparented to a pid namespace's init
// or to a child subreaper), and groups whose leader is gone. Like CRIU's
// prepare_pstree_ids, the plan then makes:
//
//   - a session helper: a task forked by the leader after its setsid (or,
//     when the leader is gone, one with the leader's PID that calls setsid
//     itself, forked by the root), which forks the orphans of that session
//     and ends once every task is made, handing them to their reaper;
//   - a process group helper: a task with the group's PID, forked by a
//     member, that makes the group for the others to join, then ends;
//   - a process forked before its parent's setsid when it kept the
//     session its parent had before (CRIU's born_sid);
//   - a process in the session of a sibling forked by the sibling with
//     CLONE_PARENT, as it was made;
//   - a dead PID's helper: a task with the PID of a process gone at dump
//     whose /proc files the tree holds, forked by the root before it
//     opens any file (CRIU's helper for a PROCFS remap), that ends with
//     the other helpers.
//
// Every process joins a group other than the one it was born in only once
// every task is made (Plan.Groups), before helpers and zombies end.
package pstree

import (
	"fmt"
	"slices"
)

// Entry is one process of pstree.img, with what planning needs of its
// core image.
type Entry struct {
	Pid, Ppid, Pgid, Sid int
	// Zombie: the process had exited but was not reaped.
	Zombie bool
	// Subreaper: the process was a child subreaper.
	Subreaper bool
}

// Options are what the restore decides beyond the images.
type Options struct {
	// Init: the root is the init of a pid namespace of its own, which
	// the tree's orphans come back to.
	Init bool
	// ShellJob: the root stays in amber's session and group unless it
	// led its own session (--shell-job).
	ShellJob bool
	// DeadPids are PIDs of processes gone at dump whose /proc files the
	// tree holds: each gets a DeadHelper.
	DeadPids []int
}

// Kind tells what a node of the plan is.
type Kind int

// Kinds of nodes.
const (
	Live          Kind = iota // a process restored to run
	Zombie                    // a process made to exit with its dumped status
	SessionHelper             // a helper that forks orphans of a session
	GroupHelper               // a helper that makes a process group
	DeadHelper                // a helper with a dead process's PID, for its /proc files
)

func (k Kind) String() string {
	return [...]string{"process", "zombie", "session helper", "process group helper", "helper of a dead pid"}[k]
}

// Node is one task to make: a process of the images or a helper.
type Node struct {
	Kind Kind
	// Pid is the task's PID; 0 for a session helper, which takes any PID
	// that no task of the plan has.
	Pid int
	// Entry is the process of the images, nil for a helper.
	Entry *Entry
	// Parent is the task that forks this one, nil for the root.
	Parent *Node
	// Early are the tasks it forks before its session step (they keep
	// the session it had before), Late those it forks after.
	Early, Late []*Node
	// The session step, run once the task is made and its Early children
	// forked: Setsid calls setsid, OwnGroup setpgid(0, 0).
	Setsid, OwnGroup bool
	// Sibling: its creator forks it with CLONE_PARENT, as a sibling of
	// its own: the process is in the session its creator leads, but a
	// child of the creator's parent.
	Sibling bool
	// EarlySubreaper: the process becomes a child subreaper before it
	// forks anything, as an orphan must come back to it when a session
	// helper below it ends. Every other child subreaper becomes one
	// last, so that orphans pass it by on their way to their own reaper.
	EarlySubreaper bool

	// bornSid is the session it must be born in, when not its own, if
	// bornIn set it: session 0 is one too (the kernel's first, which
	// processes started by an init that never called setsid are in).
	bornSid    int
	hasBornSid bool
	sid, pgid  int // where it is once made and its session step ran
	before     [2]int
	orphanedBy *Node // the dumped parent an adopted orphan must end with
}

// Adopted reports whether a process of the images is forked by another
// task than its dumped parent (a session helper, or a sibling), whose
// memory and descriptors it then does not start with.
func (n *Node) Adopted() bool { return n.Entry != nil && (n.orphanedBy != nil || n.Sibling) }

// Source is the nearest process that this task's memory comes from: its
// creator, or the creator's source when that is a zombie or a helper
// (both are copies of their own creator and change nothing of it).
func (n *Node) Source() *Node {
	s := n.Parent
	for s != nil && s.Kind != Live {
		s = s.Parent
	}
	return s
}

// Step is one setpgid(0, Pgid) that Node runs once every task is made.
type Step struct {
	Node *Node
	Pgid int
}

// Plan is the way to make the tree.
type Plan struct {
	Root *Node
	// Groups are the setpgid calls run, in order, once every task is
	// made: processes that make a group a member needs first, then the
	// members.
	Groups []Step
	// Helpers are the helper tasks, in the order they end once Groups
	// ran; each is reaped by its creator.
	Helpers []*Node
	// Zombies are the zombies, in the order they end, after the helpers.
	Zombies []*Node
	// Dead are the helpers of dead PIDs, in PID order: children of the
	// root, which forks them before anything else and reaps them when
	// they end, before the other helpers. Walk does not visit them.
	Dead  []*Node
	byPid map[int]*Node
}

// Node returns the node of the process or helper with pid, nil if none.
func (p *Plan) Node(pid int) *Node { return p.byPid[pid] }

// Pids reports the PIDs the plan's tasks take, helpers with a fixed PID
// included: a helper that takes any PID must avoid them.
func (p *Plan) Pids() map[int]bool {
	out := map[int]bool{}
	for pid := range p.byPid {
		out[pid] = true
	}
	return out
}

// Walk calls fn on every task in the order they are made: each one, then
// what it forks early, then what it forks late.
func (p *Plan) Walk(fn func(*Node)) {
	var walk func(n *Node)
	walk = func(n *Node) {
		fn(n)
		for _, c := range n.Early {
			walk(c)
		}
		for _, c := range n.Late {
			walk(c)
		}
	}
	walk(p.Root)
}

// Build plans making the tree of entries, the root first and every
// parent before its children (as pstree.img lists them). An error names
// the process whose session or group cannot be had.
func Build(entries []Entry, opts Options) (*Plan, error) {
	if len(entries) == 0 {
		return nil, fmt.Errorf("no process")
	}
	p := &Plan{byPid: map[int]*Node{}}
	children := map[*Node][]*Node{}
	for i := range entries {
		e := &entries[i]
		n := &Node{Kind: Live, Pid: e.Pid, Entry: e}
		if e.Zombie {
			n.Kind = Zombie
		}
		if p.byPid[e.Pid] != nil {
			return nil, fmt.Errorf("pid %d: listed twice", e.Pid)
		}
		p.byPid[e.Pid] = n
		if i == 0 {
			p.Root = n
			continue
		}
		if n.Parent = p.byPid[e.Ppid]; n.Parent == nil {
			return nil, fmt.Errorf("pid %d: parent %d is not listed before it", e.Pid, e.Ppid)
		}
		children[n.Parent] = append(children[n.Parent], n)
	}
	b := &builder{p: p, opts: opts, children: children, sessionHelpers: map[int]*Node{}}
	if err := b.sessions(); err != nil {
		return nil, err
	}
	b.place(p.Root)
	if err := b.simulate(); err != nil {
		return nil, err
	}
	if err := b.groups(); err != nil {
		return nil, err
	}
	if err := b.reapers(); err != nil {
		return nil, err
	}
	p.Walk(func(n *Node) {
		switch n.Kind {
		case Zombie:
			p.Zombies = append(p.Zombies, n)
		case GroupHelper:
			p.Helpers = append(p.Helpers, n)
		}
	})
	// Session helpers after the group helpers: ending, they hand their
	// orphans to the reaper, which must not matter to a group helper's
	// creator reaping it.
	p.Walk(func(n *Node) {
		if n.Kind == SessionHelper {
			p.Helpers = append(p.Helpers, n)
		}
	})
	return p, p.deadHelpers(opts.DeadPids)
}

// deadHelpers adds a helper for each dead PID. A PID that a process or
// another helper of the plan has is refused: that task would stand for
// the dead process, or not exist yet, when the files are opened.
func (p *Plan) deadHelpers(pids []int) error {
	for _, pid := range slices.Sorted(slices.Values(pids)) {
		if pid <= 0 {
			return fmt.Errorf("dead pid %d: not a PID", pid)
		}
		if n := p.byPid[pid]; n != nil {
			if n.Kind == DeadHelper {
				continue
			}
			return fmt.Errorf("pid %d: the tree holds files of /proc/%d, of a process gone at dump, and a %v with that PID: not supported", pid, pid, n.Kind)
		}
		n := &Node{Kind: DeadHelper, Pid: pid, Parent: p.Root}
		p.byPid[pid] = n
		p.Dead = append(p.Dead, n)
	}
	return nil
}

// builder carries Build's work.
type builder struct {
	p    *Plan
	opts Options
	// children are each task's children to fork, in order: the dumped
	// ones, but for those a helper adopts, then helpers.
	children       map[*Node][]*Node
	sessionHelpers map[int]*Node // by session
	orphans        []*Node       // processes a session helper adopts
}

// sessions decides how every process gets its session: its own setsid,
// its parent's session, the one its parent had before a setsid (which
// the parent's ancestors up to the leader must have had too), or a
// session helper's, for an orphan its reaper adopted.
func (b *builder) sessions() error {
	root := b.p.Root
	e := root.Entry
	root.Setsid = e.Sid == e.Pid
	root.OwnGroup = !root.Setsid && !b.opts.ShellJob && e.Pgid == e.Pid
	for _, n := range b.order() {
		if n == root {
			continue
		}
		e := n.Entry
		if e.Sid == e.Pid {
			n.Setsid = true
			continue
		}
		n.OwnGroup = e.Pgid == e.Pid
		if b.bornIn(n.Parent, e.Sid) {
			continue
		}
		if l := b.p.byPid[e.Sid]; l != nil && l.Entry != nil && l.Setsid && l.Parent == n.Parent {
			b.sibling(n, l)
			continue
		}
		if !b.reaper(n.Parent) {
			return fmt.Errorf("pid %d: its session %d is neither its parent's (%d) nor led by an ancestor it was born under, and its parent, neither a pid namespace's init nor a child subreaper, cannot have adopted it",
				e.Pid, e.Sid, n.Parent.Pid)
		}
		if err := b.adopt(n); err != nil {
			return err
		}
	}
	return nil
}

// order lists the processes of the images, parents first.
func (b *builder) order() []*Node {
	var out []*Node
	var walk func(n *Node)
	walk = func(n *Node) {
		out = append(out, n)
		for _, c := range b.children[n] {
			walk(c)
		}
	}
	walk(b.p.Root)
	return out
}

// bornIn reports whether a child of parent can be born in session sid,
// marking the ancestors that must fork it, or its ancestor, before their
// setsid (CRIU's born_sid).
func (b *builder) bornIn(parent *Node, sid int) bool {
	var marks []*Node
	for a := parent; ; a = a.Parent {
		if a.Entry.Sid == sid || a.hasBornSid && a.bornSid == sid {
			break
		}
		// a must have been in sid before it called setsid.
		if a == b.p.Root || a.Entry == nil || a.hasBornSid || a.Entry.Sid != a.Pid {
			return false
		}
		marks = append(marks, a)
	}
	for _, a := range marks {
		a.bornSid, a.hasBornSid = sid, true
	}
	return true
}

// reaper reports whether n can have adopted an orphan.
func (b *builder) reaper(n *Node) bool {
	return n.Kind == Live && ((n == b.p.Root && b.opts.Init) || n.Entry.Subreaper)
}

// adopt makes orphan n a child of the helper of its session: one forked
// by the leader, or standing in for it when it is gone.
func (b *builder) adopt(n *Node) error {
	sid := n.Entry.Sid
	h := b.sessionHelpers[sid]
	if h == nil {
		leader := b.p.byPid[sid]
		switch {
		case leader == nil:
			h = &Node{Kind: SessionHelper, Pid: sid, Parent: b.p.Root, Setsid: true}
			b.p.byPid[sid] = h
		case leader.Entry == nil || leader.Entry.Sid != sid:
			return fmt.Errorf("pid %d: its session %d is not led by pid %d, which is in session %d", n.Pid, sid, sid, leader.Entry.Sid)
		default:
			h = &Node{Kind: SessionHelper, Parent: leader}
		}
		b.sessionHelpers[sid] = h
		b.children[h.Parent] = append(b.children[h.Parent], h)
	}
	old := b.children[n.Parent]
	b.children[n.Parent] = slices.DeleteFunc(slices.Clone(old), func(c *Node) bool { return c == n })
	n.orphanedBy = n.Parent
	n.Parent = h
	b.children[h] = append(b.children[h], n)
	b.orphans = append(b.orphans, n)
	return nil
}

// sibling makes n, a process in the session its sibling l leads, a
// child l forks with CLONE_PARENT after its setsid, as it was made.
func (b *builder) sibling(n, l *Node) {
	b.children[n.Parent] = slices.DeleteFunc(slices.Clone(b.children[n.Parent]), func(c *Node) bool { return c == n })
	n.Parent, n.Sibling = l, true
	b.children[l] = append(b.children[l], n)
}

// bornSidOf is the session n must be born in; false when any will do (it
// calls setsid at once and forks nothing before).
func bornSidOf(n *Node) (int, bool) {
	switch {
	case n.hasBornSid:
		return n.bornSid, true
	case n.Setsid:
		return 0, false
	case n.Entry != nil:
		return n.Entry.Sid, true
	}
	return 0, false
}

// place splits every task's children into those forked before its
// session step (they are born in the session it had before) and after.
func (b *builder) place(n *Node) {
	n.Early, n.Late = nil, nil
	for _, c := range b.children[n] {
		if sid, ok := bornSidOf(c); n.hasBornSid && ok && sid == n.bornSid {
			n.Early = append(n.Early, c)
		} else {
			n.Late = append(n.Late, c)
		}
		b.place(c)
	}
}

// simulate follows every task's session and group as the plan makes
// them, and checks each process is born in the session it must have.
func (b *builder) simulate() error {
	root := b.p.Root
	// The root's dumped session and group stand for what it has from
	// amber, unless it makes its own.
	root.before = [2]int{root.Entry.Sid, root.Entry.Pgid}
	var err error
	var walk func(n *Node)
	walk = func(n *Node) {
		n.sid, n.pgid = n.before[0], n.before[1]
		switch {
		case n.Setsid:
			n.sid, n.pgid = n.Pid, n.Pid
		case n.OwnGroup:
			n.pgid = n.Pid
		}
		if n.Entry != nil && n.sid != n.Entry.Sid && err == nil {
			err = fmt.Errorf("pid %d: would be made in session %d, not its own %d (internal error)", n.Pid, n.sid, n.Entry.Sid)
		}
		for _, c := range n.Early {
			c.before = n.before
			walk(c)
		}
		for _, c := range n.Late {
			c.before = [2]int{n.sid, n.pgid}
			walk(c)
		}
	}
	walk(root)
	return err
}

// groups plans the setpgid calls that put every process in its group
// once all tasks are made: a group no task is in by then is made by the
// process with its PID, or else by a helper with its PID forked by its
// first member.
func (b *builder) groups() error {
	// A task in each group once all are made: one that stays there if
	// any, so that the members can join it whatever order they go in.
	in := map[int]*Node{}
	b.p.Walk(func(n *Node) {
		if m := in[n.pgid]; m == nil || (!stays(m) && stays(n)) {
			in[n.pgid] = n
		}
	})
	var found, join []Step
	var err error
	b.p.Walk(func(n *Node) {
		if err != nil || n.Entry == nil || n.pgid == n.Entry.Pgid {
			return
		}
		g := n.Entry.Pgid
		m := in[g]
		switch leader := b.p.byPid[g]; {
		case m != nil:
		case leader != nil && leader.Entry != nil:
			found = append(found, Step{leader, g})
			m, in[g] = leader, leader
		default:
			h := &Node{Kind: GroupHelper, Pid: g, Parent: n, OwnGroup: true, sid: n.sid, pgid: g}
			n.Late = append(n.Late, h)
			b.p.byPid[g] = h
			m, in[g] = h, h
		}
		if m.sid != n.sid {
			err = fmt.Errorf("pid %d: its process group %d is in session %d, not in its session %d", n.Pid, g, m.sid, n.sid)
			return
		}
		join = append(join, Step{n, g})
	})
	if err != nil {
		return err
	}
	// A process that holds a group for others but is not in it at dump
	// joins its own last, once the others are in.
	holds := map[*Node]bool{}
	for _, m := range in {
		holds[m] = true
	}
	var leave []Step
	join = slices.DeleteFunc(join, func(s Step) bool {
		if holds[s.Node] {
			leave = append(leave, s)
			return true
		}
		return false
	})
	b.p.Groups = slices.Concat(found, join, leave)
	return nil
}

// stays reports whether task n, once made, is in the group it ends in.
func stays(n *Node) bool { return n.Entry == nil || n.pgid == n.Entry.Pgid }

// reapers makes the adoptive parents of orphans child subreapers before
// they fork, and checks that each orphan comes back to its own when its
// session helper ends: to the nearest early subreaper above the helper,
// or the root as a pid namespace's init.
func (b *builder) reapers() error {
	for _, o := range b.orphans {
		if r := o.orphanedBy; !(r == b.p.Root && b.opts.Init) {
			r.EarlySubreaper = true
		}
	}
	for _, o := range b.orphans {
		var got *Node
		for a := o.Parent.Parent; a != nil && got == nil; a = a.Parent {
			if a.EarlySubreaper {
				got = a
			}
		}
		if got == nil && b.opts.Init {
			got = b.p.Root
		}
		switch {
		case got == nil:
			return fmt.Errorf("pid %d: the helper of its session %d would leave it to a process outside the tree, not to its parent %d", o.Pid, o.Entry.Sid, o.orphanedBy.Pid)
		case got != o.orphanedBy:
			return fmt.Errorf("pid %d: the helper of its session %d would leave it to pid %d, a child subreaper, not to its parent %d", o.Pid, o.Entry.Sid, got.Pid, o.orphanedBy.Pid)
		}
	}
	return nil
}
