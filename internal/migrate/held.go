package migrate

// The held handover (every migration without --lazy, but that of a tree
// on one host that is not the init of a pid namespace of its own): the
// destination restores the tree while the source holds its own frozen,
// and leaves its private anonymous memory to a lazy-pages daemon that
// fills it from the images received, after the resume. So the downtime
// holds no copy of the memory: 1 GiB takes seconds to fill on this VM,
// all of them frozen in a handover that restores the memory first. On
// one host the restore makes the tree's pid namespace anew, with the
// same PIDs inside while the frozen source holds them outside; a tree
// that is no pid namespace's init needs its PIDs themselves, which only
// the kill-first handover (final.go) frees.
//
// The source kills its tree only once the destination had every page:
// a failure before, even after the resume, thaws it. The destination
// then kills its copy: its amber when the source goes away or the
// connection breaks before every page is in (the source's tree runs
// then), the guard (guard.go) when that amber dies with pages still
// missing. The handover is the lazy one's (held, commit, resume, all
// in), with no page connection: the daemon reads the images.

import (
	"fmt"
	"time"
)

// handOverHeld has the destination restore the frozen tree, commits,
// and returns once every page is in there; the dump then kills the
// tree. An error (before or after the commit) thaws it.
func (s *source) handOverHeld() error {
	if err := s.ch.send(Msg{Op: opRestore, Lazy: true, Local: true}); err != nil {
		return err
	}
	// Checked while the destination restores.
	checked := make(chan error, 1)
	go func() { checked <- s.checkLayouts() }()
	if _, err := s.ch.expect(opOK, s.answerTimeout()); err != nil {
		return fmt.Errorf("restore on the destination: %w", err)
	}
	if err := <-checked; err != nil {
		return err
	}
	s.fault("restored-there")
	if err := s.ch.send(Msg{Op: opCommit}); err != nil {
		return err
	}
	s.commitAt = time.Now()
	s.fault("committed")
	m, err := s.ch.expect(opOK, s.answerTimeout())
	if err != nil {
		return fmt.Errorf("the destination failed after the commit: %w", err)
	}
	s.resumed(m)
	if m, err = s.ch.expect(opOK, s.answerTimeout()); err != nil {
		return fmt.Errorf("the tree runs on the destination, its memory still coming: %w", err)
	}
	s.res.AllIn = time.Duration(m.AllInNs)
	return nil
}

// resumed notes the destination's answer that the tree runs there: the
// downtime on one clock (one host), or on two hosts from the freeze to
// the commit here plus the commit to the resume there (leaving out the
// commit's latency), and the restored root.
func (s *source) resumed(m Msg) {
	if s.same {
		s.res.Downtime, s.res.Exact = time.Unix(0, m.ResumedAt).Sub(s.frozen), true
	} else {
		s.res.Downtime = s.commitAt.Sub(s.frozen) + time.Duration(m.RestoreNs)
	}
	s.res.Pid = m.Pid
}
