package pstree

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// e is an entry: pid, parent, group, session.
func e(pid, ppid, pgid, sid int) Entry { return Entry{Pid: pid, Ppid: ppid, Pgid: pgid, Sid: sid} }

// shape prints the plan's tree as "pid[flags](early|late)", helpers with
// a free PID as "h", and the group steps.
func shape(p *Plan) string {
	var walk func(n *Node) string
	walk = func(n *Node) string {
		s := fmt.Sprint(n.Pid)
		switch n.Kind {
		case SessionHelper:
			s = "S" + s
		case GroupHelper:
			s = "G" + s
		case Zombie:
			s = "Z" + s
		}
		if n.Pid == 0 {
			s = "Sh"
		}
		if n.Setsid {
			s += "!"
		}
		if n.OwnGroup {
			s += "+"
		}
		if n.EarlySubreaper {
			s += "^"
		}
		if n.Sibling {
			s += "~"
		}
		var early, late []string
		for _, c := range n.Early {
			early = append(early, walk(c))
		}
		for _, c := range n.Late {
			late = append(late, walk(c))
		}
		switch {
		case len(early) > 0:
			s += "(" + strings.Join(early, " ") + "|" + strings.Join(late, " ") + ")"
		case len(late) > 0:
			s += "(" + strings.Join(late, " ") + ")"
		}
		return s
	}
	var steps []string
	for _, st := range p.Groups {
		steps = append(steps, fmt.Sprintf("%d>%d", st.Node.Pid, st.Pgid))
	}
	return walk(p.Root) + " " + strings.Join(steps, ",")
}

func TestBuild(t *testing.T) {
	for _, c := range []struct {
		name    string
		entries []Entry
		opts    Options
		want    string
	}{
		{"plain tree", []Entry{e(10, 1, 10, 10), e(11, 10, 10, 10), e(12, 11, 10, 10)}, Options{},
			"10!(11(12)) "},
		{"own group and session", []Entry{e(10, 1, 10, 10), e(11, 10, 11, 10), e(12, 10, 12, 12)}, Options{},
			"10!(11+ 12!) "},
		// pgrp_session: B and C join A's group, created before them.
		{"join an older sibling's group", []Entry{e(10, 1, 10, 10), e(11, 10, 11, 10), e(12, 10, 11, 10)}, Options{},
			"10!(11+ 12) 12>11"},
		// Joined once every task is made: the leader is forked later.
		{"join a younger sibling's group", []Entry{e(10, 1, 10, 10), e(11, 10, 12, 10), e(12, 10, 12, 10)}, Options{},
			"10!(11 12+) 11>12"},
		{"parent in its child's group", []Entry{e(10, 1, 10, 10), e(11, 10, 12, 10), e(12, 11, 12, 10)}, Options{},
			"10!(11(12+)) 11>12"},
		// The group's leader left it for another: it makes the group
		// again, lets its member in, then joins its own.
		{"leader in another group", []Entry{e(10, 1, 10, 10), e(11, 10, 13, 10), e(12, 10, 11, 10), e(13, 10, 13, 10)}, Options{},
			"10!(11 12 13+) 11>11,12>11,11>13"},
		{"group of a dead leader", []Entry{e(10, 1, 10, 10), e(11, 10, 5, 10), e(12, 10, 5, 10)}, Options{},
			"10!(11(G5+) 12) 11>5,12>5"},
		// session00's {CHANGESID} and {DOUBLE_CHANGESID}: forked before
		// their parents' setsid.
		{"born before setsid", []Entry{e(5, 1, 5, 5), e(12, 5, 12, 12), e(13, 12, 5, 5), e(14, 5, 14, 14), e(15, 14, 15, 15), e(16, 15, 5, 5)}, Options{},
			"5!(12!(13|) 14!(15!(16|)|)) "},
		// zdtm's ns flavor: orphans of the namespace's init.
		{"orphan in its sibling's session", []Entry{e(1, 0, 1, 1), e(5, 1, 5, 5), e(7, 1, 5, 5)}, Options{Init: true},
			"1!(5!(7~)) "},
		{"orphan of a living leader", []Entry{e(1, 0, 1, 1), e(5, 1, 5, 5), e(6, 5, 6, 6), e(7, 1, 6, 6)}, Options{Init: true},
			"1!(5!(6!(Sh(7)))) "},
		{"orphan of a dead leader", []Entry{e(1, 0, 1, 1), e(5, 1, 5, 5), e(11, 1, 10, 10)}, Options{Init: true},
			"1!(5! S10!(11)) "},
		{"orphan of a zombie leader", []Entry{e(1, 0, 1, 1), e(5, 1, 5, 5), {Pid: 6, Ppid: 5, Pgid: 6, Sid: 6, Zombie: true}, e(7, 1, 6, 6)}, Options{Init: true},
			"1!(5!(Z6!(Sh(7)))) "},
		// sk-unix-restore-fs-share: the orphan's group leader is gone too.
		{"orphan in a dead leader's group", []Entry{e(1, 0, 1, 1), e(5, 1, 5, 5), e(7, 1, 6, 5)}, Options{Init: true},
			"1!(5!(7~(G6+))) 7>6"},
		// child_subreaper_and_reparent: the subreaper between the helper
		// and the init becomes one last.
		{"subreaper below the reaper", []Entry{e(1, 0, 1, 1), e(5, 1, 5, 5), {Pid: 6, Ppid: 5, Pgid: 6, Sid: 6, Subreaper: true}, e(8, 1, 6, 6)}, Options{Init: true},
			"1!(5!(6!(Sh(8)))) "},
		{"orphan of a subreaper", []Entry{{Pid: 10, Ppid: 1, Pgid: 10, Sid: 10, Subreaper: true}, e(11, 10, 11, 11), e(12, 11, 12, 12), e(13, 10, 12, 12)}, Options{},
			"10!^(11!(12!(Sh(13)))) "},
		// session02: made by its sibling, the leader, with CLONE_PARENT.
		{"in a sibling's session", []Entry{e(10, 1, 10, 10), e(11, 10, 11, 11), e(12, 10, 11, 11)}, Options{},
			"10!(11!(12~)) "},
		{"shell job", []Entry{e(10, 1, 10, 3), e(11, 10, 10, 3), e(12, 10, 12, 3)}, Options{ShellJob: true},
			"10(11 12+) "},
		{"not a shell job", []Entry{e(10, 1, 10, 3), e(11, 10, 10, 3)}, Options{},
			"10+(11) "},
		// session_leaders' K, forked by P before its setsid, in the shell
		// job's session: any number, 0 too (the kernel's first session,
		// of processes an init started that never called setsid), which
		// the plan took for "no session" and put K after P's setsid.
		{"born before setsid, in the shell job's session", []Entry{e(10, 1, 10, 3), e(11, 10, 11, 11), e(12, 11, 12, 3)}, Options{ShellJob: true},
			"10(11!(12+|)) "},
		{"born before setsid, in session 0", []Entry{e(10, 1, 10, 0), e(11, 10, 11, 11), e(12, 11, 12, 0)}, Options{ShellJob: true},
			"10(11!(12+|)) "},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, err := Build(c.entries, c.opts)
			if err != nil {
				t.Fatal(err)
			}
			if got := shape(p); got != c.want {
				t.Errorf("plan %q, want %q", got, c.want)
			}
		})
	}
}

// TestBuildSession00 plans CRIU's session00 as zdtm's ns flavor dumps it
// and follows the plan: every process must be made in its session, and
// be in its group once the group steps ran.
func TestBuildSession00(t *testing.T) {
	entries := []Entry{e(1, 0, 1, 1), e(5, 1, 5, 5), e(7, 1, 5, 5), e(11, 1, 10, 10), e(8, 5, 8, 8), e(9, 5, 5, 5),
		e(12, 5, 12, 12), e(14, 5, 14, 14), e(13, 12, 5, 5), e(15, 14, 15, 15), e(16, 15, 5, 5)}
	p, err := Build(entries, Options{Init: true})
	if err != nil {
		t.Fatal(err)
	}
	requireMade(t, p, entries)
	var helpers []string
	for _, h := range p.Helpers {
		helpers = append(helpers, fmt.Sprintf("%d by %d", h.Pid, h.Parent.Pid))
	}
	// 7 is forked by its sibling 5, the leader of its session.
	if want := []string{"10 by 1"}; !slices.Equal(helpers, want) {
		t.Errorf("helpers %q, want %q: one for dead session 10", helpers, want)
	}
}

// TestBuildSession01 plans CRIU's session01 as the ns flavor dumps it.
func TestBuildSession01(t *testing.T) {
	entries := []Entry{e(1, 0, 1, 1), e(5, 1, 5, 5), e(18, 1, 5, 5), e(19, 1, 12, 12), e(6, 5, 6, 6), e(7, 5, 5, 5),
		e(8, 5, 8, 8), e(10, 5, 10, 10), e(15, 6, 15, 6), e(16, 6, 15, 6), e(20, 6, 17, 6), e(9, 8, 5, 5),
		e(13, 10, 13, 13), e(14, 13, 5, 5)}
	p, err := Build(entries, Options{Init: true})
	if err != nil {
		t.Fatal(err)
	}
	requireMade(t, p, entries)
}

// requireMade runs the plan on paper, as the kernel would, and checks
// that every process ends in its session and group and every orphan with
// its parent.
func requireMade(t *testing.T, p *Plan, entries []Entry) {
	t.Helper()
	type ids struct{ sid, pgid, ppid int }
	got := map[*Node]*ids{}
	groups := map[int]int{} // group -> session
	free := 1000
	var make func(n *Node, parent *Node, from ids)
	make = func(n *Node, parent *Node, from ids) {
		if n.Pid == 0 {
			free++
			n.Pid = free
			defer func() { n.Pid = 0 }()
		}
		pid := n.Pid
		me := &ids{from.sid, from.pgid, 0}
		switch {
		case n.Sibling:
			me.ppid = got[parent].ppid
		case parent != nil:
			me.ppid = parent.Pid
		}
		got[n] = me
		before := *me
		for _, c := range n.Early {
			make(c, n, before)
		}
		switch {
		case n.Setsid:
			me.sid, me.pgid = pid, pid
			groups[pid] = pid
		case n.OwnGroup:
			me.pgid = pid
			groups[pid] = me.sid
		}
		for _, c := range n.Late {
			make(c, n, *me)
		}
	}
	r := p.Root.Entry
	groups[r.Pgid] = r.Sid
	make(p.Root, nil, ids{r.Sid, r.Pgid, 0})
	for _, s := range p.Groups {
		me := got[s.Node]
		sid, ok := groups[s.Pgid]
		if s.Pgid != s.Node.Pid && (!ok || sid != me.sid) {
			t.Fatalf("pid %d: setpgid(0, %d): no such group in session %d", s.Node.Pid, s.Pgid, me.sid)
		}
		me.pgid = s.Pgid
		groups[s.Pgid] = me.sid
	}
	// Helpers end: their children go to the nearest early subreaper
	// above, or the init.
	for _, h := range p.Helpers {
		for _, c := range h.Late {
			to := p.Root
			for a := h.Parent; a != nil; a = a.Parent {
				if a.EarlySubreaper {
					to = a
					break
				}
			}
			got[c].ppid = to.Pid
		}
	}
	for _, en := range entries {
		n := p.Node(en.Pid)
		g := got[n]
		if n != p.Root && (g.sid != en.Sid || g.pgid != en.Pgid || g.ppid != en.Ppid) {
			t.Errorf("pid %d: session %d, group %d, parent %d; want %d, %d, %d", en.Pid, g.sid, g.pgid, g.ppid, en.Sid, en.Pgid, en.Ppid)
		}
	}
}

func TestBuildErrors(t *testing.T) {
	for _, c := range []struct {
		name    string
		entries []Entry
		opts    Options
		want    string
	}{
		// Not the init, not a subreaper: pid 11 cannot have been
		// adopted; no ancestor leads session 7.
		{"foreign session", []Entry{e(10, 1, 10, 10), e(11, 10, 11, 7)}, Options{}, "pid 11: its session 7"},
		// The helper below subreaper 11 would give 12 to 11, not to
		// its parent, the init.
		{"subreaper in the way", []Entry{e(1, 0, 1, 1), {Pid: 5, Ppid: 1, Pgid: 5, Sid: 5, Subreaper: true}, e(6, 5, 6, 6), e(7, 5, 6, 6),
			{Pid: 8, Ppid: 6, Pgid: 8, Sid: 8}, e(9, 5, 8, 8), e(12, 1, 8, 8)}, Options{Init: true}, "pid 12: the helper of its session 8 would leave it to pid 5"},
		{"group in another session", []Entry{e(10, 1, 10, 10), e(11, 10, 11, 11), e(12, 10, 11, 10)}, Options{}, "pid 12: its process group 11 is in session 11"},
		{"parent missing", []Entry{e(10, 1, 10, 10), e(11, 9, 11, 10)}, Options{}, "pid 11: parent 9"},
		{"dead pid of a process", []Entry{e(10, 1, 10, 10), e(11, 10, 10, 10)}, Options{DeadPids: []int{11}}, "pid 11: the tree holds files of /proc/11"},
		// The session helper of gone leader 7 has its PID.
		{"dead pid of a session helper", []Entry{e(1, 0, 1, 1), e(5, 1, 7, 7)}, Options{Init: true, DeadPids: []int{7}}, "a session helper with that PID"},
		{"dead pid zero", []Entry{e(10, 1, 10, 10)}, Options{DeadPids: []int{0}}, "dead pid 0"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Build(c.entries, c.opts)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want one with %q", err, c.want)
			}
		})
	}
}

// TestPlanOrder: Walk makes every task after the one that forks it, the
// processes a helper adopts after the helper.
func TestPlanOrder(t *testing.T) {
	p, err := Build([]Entry{e(1, 0, 1, 1), e(7, 1, 6, 6), e(5, 1, 5, 5), e(6, 5, 6, 6)}, Options{Init: true})
	if err != nil {
		t.Fatal(err)
	}
	var order []int
	p.Walk(func(n *Node) { order = append(order, n.Pid) })
	if want := []int{1, 5, 6, 0, 7}; !slices.Equal(order, want) {
		t.Errorf("order %v, want %v", order, want)
	}
	if n := p.Node(7); !n.Adopted() || n.Source() != p.Node(6) {
		t.Errorf("pid 7: adopted %v, source %v; want adopted, the memory of 6", n.Adopted(), n.Source())
	}
	if n := p.Node(6); n.Adopted() || n.Source() != p.Node(5) {
		t.Errorf("pid 6: adopted %v, source %v; want its parent's", n.Adopted(), n.Source())
	}
}

// TestDeadHelpers: each dead PID, once, gets a helper that the root
// forks and that no walk visits; its PID is the plan's.
func TestDeadHelpers(t *testing.T) {
	p, err := Build([]Entry{e(1, 0, 1, 1), e(5, 1, 5, 1)}, Options{Init: true, DeadPids: []int{9, 6, 9}})
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, n := range p.Dead {
		if n.Kind != DeadHelper || n.Parent != p.Root || p.Node(n.Pid) != n {
			t.Errorf("dead helper %d: kind %v, parent %v", n.Pid, n.Kind, n.Parent)
		}
		pids = append(pids, n.Pid)
	}
	if want := []int{6, 9}; !slices.Equal(pids, want) {
		t.Errorf("dead helpers %v, want %v", pids, want)
	}
	p.Walk(func(n *Node) {
		if n.Kind == DeadHelper {
			t.Errorf("Walk visits dead helper %d", n.Pid)
		}
	})
	if !p.Pids()[6] || !p.Pids()[9] {
		t.Errorf("Pids %v lacks the dead helpers'", p.Pids())
	}
}
