package migrate

// The held handover (one host, a tree that is the init of a pid
// namespace of its own, not --lazy): the destination restores the tree
// while the source holds its own frozen, with the PIDs of a new pid
// namespace, and leaves its private anonymous memory to a lazy-pages
// daemon that fills it from the images received, after the resume. So
// the downtime holds no copy of the memory: 1 GiB takes seconds to fill
// on this VM, all of them frozen with the other handovers of one host,
// which kill the tree first and restore it whole.
//
// The source kills its tree only once the destination had every page:
// a failure before, even after the resume, thaws it, and the
// destination's guard (guard.go) kills a copy whose amber died with
// pages still missing. The handover is the lazy one's (held, commit,
// resume, all in), with no page connection: the daemon reads the
// images.

import (
	"fmt"
	"time"
)

// handOverHeld has the destination restore the frozen tree, commits,
// and returns once every page is in there; the dump then kills the
// tree. An error (before or after the commit) thaws it.
func (s *source) handOverHeld() error {
	if err := s.restoreAndCommit(Msg{Op: opRestore, Lazy: true, Local: true}); err != nil {
		return err
	}
	s.fault("committed")
	m, err := s.ch.expect(opOK, s.answerTimeout())
	if err != nil {
		return fmt.Errorf("the destination failed after the commit: %w", err)
	}
	s.res.Downtime, s.res.Exact, s.res.Pid = time.Unix(0, m.ResumedAt).Sub(s.frozen), true, m.Pid
	if m, err = s.ch.expect(opOK, s.answerTimeout()); err != nil {
		return fmt.Errorf("the tree runs on the destination, its memory still coming: %w", err)
	}
	s.res.AllIn = time.Duration(m.AllInNs)
	return nil
}
