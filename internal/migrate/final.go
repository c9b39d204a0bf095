package migrate

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"amber/internal/proc"
	"amber/internal/restore"
)

// opKeep asks the destination to keep its images: the source could
// restore the tree from them neither there nor here.
const opKeep = "keep"

// final dumps the frozen tree on top of prev and hands it over: held,
// inside the dump (the dump kills the tree once the destination had
// every page), or killed first, after it (handOverLocal).
func (s *source) final(prev string) error {
	if _, err := s.transfer("final", prev, s.notify); err != nil {
		return fmt.Errorf("final dump: %w", err)
	}
	return nil
}

// notify follows the final dump: it notes which tasks the frozen tree
// has, and sends the rest once every image is written. An error thaws
// the tree.
func (s *source) notify(action string) error {
	switch action {
	case "query-ext-files":
		tasks, err := treeTasks(s.opts.Pid)
		if err != nil {
			return err
		}
		s.tasks = tasks
	case "post-dump":
		return s.sendRest()
	}
	return nil
}

// sendRest sends the frozen tree's last pages' answer, then every other
// image; a held or lazy handover then has the destination restore.
func (s *source) sendRest() error {
	pages, err := s.pagesReceived()
	if err != nil {
		return err
	}
	s.res.Final = pages
	if err := s.sendImages(filepath.Join(s.work, "final")); err != nil {
		return err
	}
	s.fault("images-sent")
	switch {
	case s.opts.Lazy:
		return s.startLazyHandover()
	case s.held:
		return s.handOverHeld()
	}
	// Kill-first: the dump kills the tree once this returns.
	return s.checkLayouts()
}

// learnLayouts reads the layouts of the running tree's processes for a
// final dump with no pre-dump before it (dump.Layouts.LearnRunning).
func (s *source) learnLayouts() {
	start := time.Now()
	pids, err := treeProcs(s.opts.Pid)
	if err != nil {
		return // the dump finds out
	}
	s.layouts.LearnRunning(pids)
	s.log.Debugf("migrate: the layouts of %d processes read before the freeze in %v", len(pids), time.Since(start))
}

// checkLayouts checks the layouts the final dump reused from the
// pre-dumps against the frozen tree's smaps (dump.Layouts): an error
// keeps the tree here.
func (s *source) checkLayouts() error {
	start := time.Now()
	if err := s.layouts.Check(); err != nil {
		return fmt.Errorf("the final dump's images are not the frozen tree's: %w", err)
	}
	s.log.Debugf("migrate: the layouts the final dump reused checked in %v", time.Since(start))
	return nil
}

// sendImages sends every image of dir but the source's own records.
func (s *source) sendImages(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !e.Type().IsRegular() || ownRecord(e.Name()) {
			continue
		}
		if err := s.sendFile(dir, e.Name()); err != nil {
			return err
		}
	}
	if err := s.ch.send(Msg{Op: opEndFiles}); err != nil {
		return err
	}
	if _, err := s.ch.expect(opOK, s.answerTimeout()); err != nil {
		return fmt.Errorf("images: %w", err)
	}
	return nil
}

// ownRecord says whether an image is the source's record of its chain:
// what it sent, where it tracks memory.
func ownRecord(name string) bool {
	return strings.HasPrefix(name, "amber-sent-pagemap-") || name == "amber-track.txt"
}

// sendFile queues one image on the control channel.
func (s *source) sendFile(dir, name string) error {
	f, err := os.Open(filepath.Join(dir, name))
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if err := s.ch.queue(Msg{Op: opFile, Name: name, Size: st.Size()}); err != nil {
		return err
	}
	if _, err := io.CopyN(s.ch.w, f, st.Size()); err != nil {
		return fmt.Errorf("send %s: %w", name, err)
	}
	return nil
}

// handOverLocal has the destination restore the tree the dump killed,
// once its PIDs are free. If the destination fails, the tree is restored
// here from the destination's images.
func (s *source) handOverLocal() error {
	s.fault("tree-killed")
	if err := waitGone(s.tasks, s.answerTimeout()); err != nil {
		s.log.Errorf("migrate: %v", err)
	}
	s.log.Infof("migrate: the tree's %d tasks are gone here, %v after the freeze", len(s.tasks), time.Since(s.frozen))
	if err := s.ch.send(Msg{Op: opRestore, SameHost: true}); err != nil {
		return s.rollback(err)
	}
	m, err := s.ch.expect(opOK, s.answerTimeout())
	if err != nil {
		return s.rollback(err)
	}
	s.res.Downtime = time.Unix(0, m.ResumedAt).Sub(s.frozen)
	s.res.Exact = true
	s.res.Pid = m.Pid
	if err := s.ch.send(Msg{Op: opDone}); err != nil {
		s.log.Warnf("migrate: the tree runs on the destination; after it: %v", err)
	}
	return nil
}

// rollback restores the tree here from the destination's images after
// the destination failed to (one host), then has them removed.
func (s *source) rollback(cause error) error {
	dir := filepath.Join(s.dest, "final")
	if runs(s.opts.Pid) {
		// The destination restored the tree, then went away before it
		// said so.
		s.removeDest()
		return fmt.Errorf("%w: %w; the tree runs (pid %d), restored by the destination", errDestination, cause, s.opts.Pid)
	}
	s.log.Errorf("migrate: the destination did not restore the tree (%v): restoring it here from %s", cause, dir)
	if err := waitGone(s.tasks, s.answerTimeout()); err != nil {
		s.log.Errorf("migrate: %v", err)
	}
	res, err := restore.Run(restore.Options{ImagesDir: dir, Detach: true, ShellJob: s.opts.ShellJob,
		TCPEstablished: s.opts.TCPEstablished, TCPClose: s.opts.TCPClose, FileLocks: s.opts.FileLocks, Log: s.log})
	if err != nil {
		s.ch.send(Msg{Op: opKeep})
		return fmt.Errorf("%w: %w; its restore here from %s failed too, the images stay there: %w", errDestination, cause, dir, err)
	}
	var remote *RemoteError
	if errors.As(cause, &remote) {
		s.ch.send(Msg{Op: opDone})
	} else {
		s.removeDest()
	}
	return fmt.Errorf("%w: %w; the tree runs here again as pid %d", errDestination, cause, res.Pid)
}

// removeDest removes the destination's images after its amber went away
// (one host: the same file system).
func (s *source) removeDest() {
	for _, d := range s.sent {
		if err := os.RemoveAll(filepath.Join(s.dest, d)); err != nil {
			s.log.Warnf("migrate: remove %s: %v", d, err)
		}
	}
}

// runs says whether a live process (not a zombie) has pid.
func runs(pid int) bool {
	st, err := proc.ReadStat(pid)
	return err == nil && st.State != 'Z' && st.State != 'X'
}

// treeTasks lists every PID and TID of the frozen tree rooted at pid.
func treeTasks(pid int) ([]int, error) {
	var out []int
	err := walkTree(pid, func(p int) error {
		tids, err := proc.Threads(p)
		out = append(out, tids...)
		return err
	})
	return out, err
}

// treeProcs lists the processes of the tree rooted at pid.
func treeProcs(pid int) ([]int, error) {
	var out []int
	err := walkTree(pid, func(p int) error {
		out = append(out, p)
		return nil
	})
	return out, err
}

// walkTree calls visit for pid and then for each of its descendants,
// parents before their children, until one fails.
func walkTree(pid int, visit func(pid int) error) error {
	if err := visit(pid); err != nil {
		return err
	}
	kids, err := proc.Children(pid)
	if err != nil {
		return err
	}
	for _, k := range kids {
		if err := walkTree(k, visit); err != nil {
			return err
		}
	}
	return nil
}

// waitGone waits until no task holds any of the ids: the killed tree is
// reaped, and its PIDs are free for the restore.
func waitGone(ids []int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for _, id := range ids {
		for unix.Kill(id, 0) != unix.ESRCH {
			if time.Now().After(deadline) {
				return fmt.Errorf("pid %d of the killed tree is still taken after %v (not reaped by its parent?)", id, timeout)
			}
			time.Sleep(200 * time.Microsecond)
		}
	}
	return nil
}
