package migrate

// Lazy migration (amber migrate --lazy): the final dump sends every page
// but those of private anonymous memory, which it leaves at the source
// (PE_LAZY entries on the page connection), and keeps the tree frozen.
// After the other images, the source asks for a lazy restore and opens
// one more connection to the destination, on which it answers the
// destination's requests for pages (CRIU's GET) from the frozen tree.
// The destination runs a lazy-pages daemon fetching over it, restores
// with every task held, and the handover is the held one (held.go): ok,
// commit, resume. The daemon brings what the tasks do not fault in in
// the background; once every page is in it ends the session (CLOSE),
// and the source kills its tree.
//
// Until then the source's tree is whole and frozen: a failure before
// the commit kills the destination's tasks and thaws the source's; a
// source amber lost after the commit thaws its tree and the
// destination, whose fetches fail, kills its copy. A destination amber
// lost after the commit, before every page is in, ends the session
// without CLOSE: the source thaws, and the destination's guard (guard.go)
// kills the copy there, whose tasks lost their userfaultfds.
//
// On one host the restore needs the tree's PIDs while the frozen source
// holds them: the tree must be the init of a pid namespace of its own,
// which the restore makes anew with the same PIDs inside.

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"amber/internal/lazy"
	"amber/internal/pageserver"
	"amber/internal/proc"
	"amber/internal/restore"
)

// lazySource is the source's state of a lazy handover.
type lazySource struct {
	mu      sync.Mutex
	conn    net.Conn // the page connection to the destination, once dialed
	aborted error    // the handover failed before the dial
	done    chan error
}

// checkLazyHost refuses a lazy migration on one host of a tree that is
// not the init of a pid namespace: its restore would need the PIDs the
// frozen source holds.
func checkLazyHost(pid int) error {
	st, err := proc.ReadStatus(pid)
	if err != nil {
		return err
	}
	if n := len(st.NSpid); n < 2 || st.NSpid[n-1] != 1 {
		return fmt.Errorf("--lazy on one host: pid %d is not the init of a pid namespace of its own, and its restore would need the PIDs its frozen source holds", pid)
	}
	return nil
}

// startLazyHandover asks for the lazy restore and follows the handover
// on the control channel while the dump serves pages.
func (s *source) startLazyHandover() error {
	if err := s.ch.send(Msg{Op: opRestore, Lazy: true}); err != nil {
		return err
	}
	s.lazy.done = make(chan error, 1)
	go func() { s.lazy.done <- s.lazyHandover() }()
	return nil
}

// lazyHandover waits for the destination's tasks to be restored,
// checks meanwhile the layouts the final dump reused, and commits; a
// failure before the commit drops the page connection, which thaws the
// tree here.
func (s *source) lazyHandover() error {
	// Checked while the destination restores.
	checked := make(chan error, 1)
	go func() { checked <- s.checkLayouts() }()
	if _, err := s.ch.expect(opOK, s.answerTimeout()); err != nil {
		s.abortLazy(err)
		<-checked
		return fmt.Errorf("restore on the destination: %w", err)
	}
	if err := <-checked; err != nil {
		s.abortLazy(err)
		return err
	}
	if err := s.ch.send(Msg{Op: opCommit}); err != nil {
		s.abortLazy(err)
		return err
	}
	s.commitAt = time.Now()
	s.fault("committed")
	m, err := s.ch.expect(opOK, s.answerTimeout())
	if err != nil {
		return fmt.Errorf("the destination failed after the commit: %w", err)
	}
	s.resumed(m)
	return nil
}

// dialLazy opens the page connection the dump serves lazy pages on.
func (s *source) dialLazy() (net.Conn, error) {
	s.lazy.mu.Lock()
	defer s.lazy.mu.Unlock()
	if s.lazy.aborted != nil {
		return nil, fmt.Errorf("the handover failed: %w", s.lazy.aborted)
	}
	conn, err := net.DialTimeout("tcp", s.opts.To, s.opts.Timeout)
	if err != nil {
		return nil, err
	}
	s.lazy.conn = conn
	return conn, nil
}

// abortLazy drops the page connection, or has it never dialed.
func (s *source) abortLazy(cause error) {
	s.lazy.mu.Lock()
	defer s.lazy.mu.Unlock()
	s.lazy.aborted = cause
	if s.lazy.conn != nil {
		s.lazy.conn.Close()
	}
}

// finalLazy is final for --lazy: the dump returns once the destination
// had every page (the tree is killed) or failed (the tree runs on).
func (s *source) finalLazy(prev string) error {
	_, err := s.transfer("final", prev, s.notify)
	var herr error
	if s.lazy.done != nil {
		if err != nil {
			// The handover may wait for an answer that is not coming.
			s.ch.conn.Close()
		}
		herr = <-s.lazy.done
	}
	if err != nil {
		return fmt.Errorf("final dump: %w", errors.Join(herr, err))
	}
	if herr != nil {
		return fmt.Errorf("every page went over, and the tree here is killed, but: %w", herr)
	}
	m, err := s.ch.expect(opOK, s.answerTimeout())
	if err != nil {
		return fmt.Errorf("the tree runs on the destination, and it is killed here, but: %w", err)
	}
	s.res.AllIn = time.Duration(m.AllInNs)
	return nil
}

// restoreLazy restores the tree with its private anonymous memory left
// to a lazy-pages daemon that fetches it from the source, on a page
// connection the source opens, or, local (held.go), reads it from the
// images received. The tasks are held until the source's commit; the
// session ends once every page is in, and the source then kills its
// tree. If the daemon fails after the commit (the source is gone), the
// restored tree is killed: the source's thawed.
func (r *receiver) restoreLazy(local bool) (Received, error) {
	var src *pageserver.Source
	var fetch func(pid int, addr uint64, buf []byte) error
	if !local {
		conn, err := r.acceptPages()
		if err != nil {
			return Received{}, err
		}
		src = pageserver.NewSource(conn, conn.RemoteAddr().String())
		defer src.Abort()
		fetch = src.Fetch
	}
	dir := r.dirs[len(r.dirs)-1]
	d := r.startDaemon(dir, fetch)
	if err := <-d.ready; err != nil {
		return Received{}, err
	}
	g, err := r.takeGuard()
	if err != nil {
		d.stop(dir)
		return Received{}, err
	}
	opts := r.restoreOptions()
	opts.LazyPages = true
	var committed time.Time
	held := r.heldUntilCommit(&committed)
	opts.Notify = func(action string, pid int) error {
		if action == "post-restore" {
			if err := g.watch(pid); err != nil {
				return err
			}
		}
		return held(action, pid)
	}
	res, err := restore.Run(opts)
	if err != nil {
		if src != nil {
			src.Abort()
		}
		d.stop(dir)
		g.fire()
		return Received{}, fmt.Errorf("restore: %w", err)
	}
	resumed := time.Now()
	gone := r.watchSource()
	if err := r.ch.send(Msg{Op: opOK, ResumedAt: resumed.UnixNano(), RestoreNs: int64(resumed.Sub(committed)), Pid: res.Pid}); err != nil {
		r.log.Warnf("receive: the tree runs as pid %d, but the source did not hear it: %v", res.Pid, err)
	}
	r.fault("lazy-resumed")
	// The source kills its tree only once it heard every page is in: gone
	// before, it thawed it (or its amber died, which thaws it). Looked at
	// again once the pages are in, so that a source gone first is seen.
	var out daemonOut
	select {
	case out = <-d.done:
		select {
		case err := <-gone:
			return Received{}, r.killCopy(res.Pid, g, src, err)
		default:
		}
	case err := <-gone:
		killTree(res.Pid)
		if src != nil {
			src.Abort() // ends a fetch in flight too
		}
		<-d.done
		return Received{}, r.killCopy(res.Pid, g, src, err)
	}
	if out.err != nil {
		killTree(res.Pid)
		g.fire()
		return Received{}, fmt.Errorf("the tree restored as pid %d is killed, its pages did not all come (the source's tree runs on): %w", res.Pid, out.err)
	}
	if err := g.release(); err != nil {
		r.log.Warnf("receive: the guard of the restored tree: %v", err)
	}
	allIn := time.Since(resumed)
	r.log.Infof("receive: every page in %v after the resume: %d bytes on faults, %d in the background", allIn, out.st.Faulted, out.st.Prefetched)
	if src != nil {
		if err := src.Close(); err != nil {
			r.log.Warnf("receive: the tree runs as pid %d with every page; the end of the lazy session: %v", res.Pid, err)
		}
	}
	if err := r.ch.send(Msg{Op: opOK, AllInNs: int64(allIn)}); err != nil {
		r.log.Warnf("receive: the tree runs as pid %d with every page, but the source did not hear it: %v", res.Pid, err)
	}
	return Received{Pid: res.Pid}, nil
}

// killCopy kills the restored tree rooted at pid, whose source went
// away (cause) before every page was in.
func (r *receiver) killCopy(pid int, g *guard, src *pageserver.Source, cause error) error {
	killTree(pid)
	g.fire()
	if src != nil {
		src.Abort()
	}
	return fmt.Errorf("the source went away before every page was in, its tree runs there; the tree restored here as pid %d is killed: %w", pid, cause)
}

// watchSource reads the control channel once the restored tree runs,
// its pages still coming, and reports what ends the read: the source
// sends nothing until it heard every page is in, so anything (its
// amber gone, the connection broken, a message) means that its tree
// runs there. Left waiting after the last answer, the read ends with
// the connection.
func (r *receiver) watchSource() <-chan error {
	gone := make(chan error, 1)
	go func() {
		m, err := r.ch.recv(0)
		if err == nil {
			err = fmt.Errorf("it sent %q", m.Op)
		}
		gone <- err
	}()
	return gone
}

// heldUntilCommit is the restore's Notify hook that, once every task is
// restored and before any runs, tells the source and waits for its
// commit; it notes when the commit came.
func (r *receiver) heldUntilCommit(committed *time.Time) func(string, int) error {
	return func(action string, pid int) error {
		if action != "post-restore" {
			return nil
		}
		if err := r.ch.send(Msg{Op: opOK, Pid: pid}); err != nil {
			return err
		}
		if _, err := r.ch.expect(opCommit, r.opts.Timeout); err != nil {
			return fmt.Errorf("waiting for the source's commit: %w", err)
		}
		*committed = time.Now()
		return nil
	}
}

// daemonRun is a lazy-pages daemon run inside amber receive.
type daemonRun struct {
	ready chan error
	done  chan daemonOut
}

type daemonOut struct {
	st  lazy.Stats
	err error
}

// startDaemon runs the lazy-pages daemon of the images in dir, fetching
// what they lack with fetch (nil: they have every page); ready says once
// it listens (or why it could not).
func (r *receiver) startDaemon(dir string, fetch func(pid int, addr uint64, buf []byte) error) *daemonRun {
	d := &daemonRun{ready: make(chan error, 1), done: make(chan daemonOut, 1)}
	go func() {
		listening := false
		st, err := lazy.Serve(lazy.Options{Dir: dir, Fetch: fetch, Log: r.log,
			Ready: func() error { listening = true; d.ready <- nil; return nil }})
		if !listening {
			d.ready <- err
		}
		d.done <- daemonOut{st, err}
	}()
	return d
}

// stop ends a daemon whose restore failed, before or after it connected:
// a connection that closes at once ends one still waiting.
func (d *daemonRun) stop(dir string) {
	if c, err := lazy.Dial(dir); err == nil {
		c.Close()
	}
	<-d.done
}

// killTree kills the tree restored as pid: every process of it, the
// root first (for the init of a pid namespace, that kills the rest).
func killTree(pid int) {
	ids, _ := treeTasks(pid)
	unix.Kill(pid, unix.SIGKILL)
	for _, id := range ids {
		unix.Kill(id, unix.SIGKILL)
	}
}
