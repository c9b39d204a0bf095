package migrate

import (
	"errors"
	"fmt"
	"time"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/pstree"

	"amber/internal/image"
	"amber/internal/restore"
)

// sentError is an error already reported to the peer.
type sentError struct{ err error }

func (e *sentError) Error() string { return e.err.Error() }
func (e *sentError) Unwrap() error { return e.err }

// restore restores the tree of the chain's last directory, with the
// handover the source asked for (see the package doc).
func (r *receiver) restore(m Msg) (Received, error) {
	if len(r.dirs) == 0 {
		return Received{}, errors.New("restore before any images")
	}
	r.closeDir()
	r.fault("restore-requested")
	switch {
	case m.Lazy:
		return r.restoreLazy(m.Local)
	case m.SameHost:
		return r.restoreLocal()
	}
	return Received{}, errors.New("a restore request that is neither lazy nor of one host")
}

// restoreLocal restores a tree the source has already killed. If the
// restore fails, the images stay until the source, which restores the
// tree from them itself, is done with them.
func (r *receiver) restoreLocal() (Received, error) {
	start := time.Now()
	r.log.Infof("receive: restoring %s", r.dirs[len(r.dirs)-1])
	res, err := restore.Run(r.restoreOptions())
	if err != nil {
		err = fmt.Errorf("restore: %w", err)
		r.ch.sendError(err)
		r.log.Errorf("receive: %v; the source restores the tree from %s", err, r.dirs[len(r.dirs)-1])
		// No bound: the images must outlive the source's restore from
		// them, which ends with done or with the source amber.
		if m, _ := r.ch.recv(0); m.Op == opKeep {
			r.keep = true
		} else {
			r.keep = false
		}
		return Received{}, &sentError{err}
	}
	resumed := time.Now()
	r.fault("restored")
	if err := r.ch.send(Msg{Op: opOK, ResumedAt: resumed.UnixNano(), RestoreNs: int64(resumed.Sub(start)), Pid: res.Pid}); err != nil {
		r.log.Warnf("receive: the tree runs as pid %d, but the source did not hear it: %v", res.Pid, err)
	} else if _, err := r.ch.expect(opDone, r.opts.Timeout); err != nil {
		r.log.Warnf("receive: the tree runs as pid %d; after it: %v", res.Pid, err)
	}
	return Received{Pid: res.Pid}, nil
}

// orphaned handles a source amber gone once every image was here. On
// two hosts its tree thawed: nothing to do. On one, its tree may be dead
// already (killed for the handover): then this amber restores it, once
// its PIDs are free; a source tree that still runs is left alone.
func (r *receiver) orphaned() (Received, error) {
	lost := errSourceGone
	boot, err := bootID()
	if err != nil || boot != r.src.BootID {
		return Received{}, lost
	}
	r.closeDir()
	ids, err := treeIDs(r.dirs[len(r.dirs)-1])
	if err != nil {
		return Received{}, errors.Join(lost, err)
	}
	// A tree that was being killed when the source amber died is dying:
	// let it, before asking.
	time.Sleep(orphanSettle)
	if runs(ids[0]) {
		return Received{}, fmt.Errorf("%w; its tree runs there (pid %d)", lost, ids[0])
	}
	r.log.Warnf("receive: %v and its tree is gone: restoring it here", lost)
	if err := waitGone(ids, r.opts.Timeout); err != nil {
		return Received{}, errors.Join(lost, err)
	}
	res, err := restore.Run(r.restoreOptions())
	if err != nil {
		return Received{}, errors.Join(lost, fmt.Errorf("restore: %w", err))
	}
	return Received{Pid: res.Pid}, nil
}

// orphanSettle is how long a tree killed as its source amber died takes
// to be seen dead.
const orphanSettle = 100 * time.Millisecond

// treeIDs lists the PIDs and TIDs of the tree in the images of dir, the
// root first.
func treeIDs(dir string) ([]int, error) {
	d, err := image.OpenDir(dir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	entries, err := image.ReadFile(d.PstreePath(), image.Pstree, func() *pstree.PstreeEntry { return &pstree.PstreeEntry{} })
	if err != nil {
		return nil, err
	}
	var ids []int
	for _, e := range entries {
		ids = append(ids, int(e.GetPid()))
		for _, t := range e.GetThreads() {
			ids = append(ids, int(t))
		}
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("%s: an empty pstree", dir)
	}
	return ids, nil
}
