package migrate

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"amber/internal/compel"
	"amber/internal/dump"
	"amber/internal/image"
	"amber/internal/log"
)

// Options are amber migrate's settings.
type Options struct {
	Pid int    // root of the tree to move
	To  string // the destination's amber receive, host:port
	// MaxIters bounds the pre-dumps; 0 sends everything in the freeze
	// (a plain dump and restore over the wire).
	MaxIters int
	// MinPages ends the pre-dumps once one sends at most this many.
	MinPages uint64
	// WorkDir holds the source's images of each dump (all but the
	// pages); "" for a temporary directory removed at the end.
	WorkDir string
	// The dump's settings, which the restore mirrors.
	ShellJob       bool
	TCPEstablished bool
	TCPClose       bool
	FileLocks      bool
	GhostLimit     int64
	// Lazy leaves private anonymous memory out of the freeze: the
	// destination resumes the tree first and fetches those pages from
	// the source's frozen tree after (see lazy.go).
	Lazy bool
	// Timeout bounds each wait for a task (the dump's --timeout) and
	// for the destination.
	Timeout time.Duration
	// TwoHosts hands over as between two hosts even on one: the
	// destination restores while the source is frozen (tests of its
	// failures: there the restore meets the source's PIDs).
	TwoHosts bool
	// Fault, if set, is called at named points of the migration (tests
	// kill amber there: "pre-dumped", "images-sent", "tree-killed").
	Fault func(point string)
	Log   *log.Logger
}

// Result tells how a migration went.
type Result struct {
	PreDumps []uint64 // pages each pre-dump sent
	Final    uint64   // pages sent while the tree was frozen
	// Downtime is from the freeze of the tree (the last moment it ran
	// here) to its resumption on the destination.
	Downtime time.Duration
	// Exact says whether Downtime was read on one clock (one host): on
	// two it leaves out the latency of one message.
	Exact bool
	// AllIn is, for a lazy migration, from the resumption on the
	// destination to the moment it had every page.
	AllIn    time.Duration
	Total    time.Duration
	SameHost bool
	// Handover names the handover and, for the kill-first one, why.
	Handover string
	Pid      int // the root on the destination
}

// minIterGain is the least a pre-dump must shrink the dirty set, as a
// fraction of the one before (1/minIterGain): below that, pre-copy has
// converged and more rounds only add time.
const minIterGain = 8

// source is the source's side of one migration.
type source struct {
	opts Options
	log  *log.Logger
	ch   *channel
	work string
	dest string // the destination's images directory
	same bool
	// held: the destination restores while the tree is frozen here, its
	// memory filled from its own images after the resume, and the tree
	// is killed once every page is in there (every handover but --lazy's
	// between two hosts; on one, a tree that is the init of a pid
	// namespace; see held.go).
	held  bool
	res   Result
	start time.Time
	// frozen is when the final dump froze the tree; tasks its PIDs and
	// TIDs then (one host: the destination waits for them to be free).
	frozen time.Time
	tasks  []int
	// commitAt is when the source committed.
	commitAt time.Time
	// sent are the directories of the chain asked of the destination.
	sent []string
	// lazy is the state of a lazy handover.
	lazy lazySource
	// layouts carries the layouts the pre-dumps read to the final dump,
	// whose tree waits less for them; checked before the handover.
	layouts *dump.Layouts
}

// Migrate moves the tree to the destination. On error the tree runs
// here as before, unless the error says otherwise (a tree restored here
// again after the destination failed, on one host).
func Migrate(o Options) (Result, error) {
	if o.Log == nil {
		o.Log = log.Discard()
	}
	if o.Timeout == 0 {
		o.Timeout = compel.DefaultTimeout
	}
	s := &source{opts: o, log: o.Log, start: time.Now(), layouts: dump.NewLayouts()}
	// The final dump runs with the tree frozen: the protobuf coders it
	// writes the images with are built now, not then.
	image.Warm()
	res, err := s.run()
	var remote *RemoteError
	if err != nil && s.same && !errors.Is(err, errDestination) && !errors.As(err, &remote) {
		// The destination amber went away: on one host its images are
		// removed here, as it would have.
		s.removeDest()
	}
	if err != nil {
		return res, fmt.Errorf("migrate pid %d to %s: %w", o.Pid, o.To, err)
	}
	return res, nil
}

func (s *source) run() (Result, error) {
	conn, err := net.DialTimeout("tcp", s.opts.To, s.opts.Timeout)
	if err != nil {
		return s.res, err
	}
	defer conn.Close()
	s.ch = newChannel(conn)
	if err := s.hello(); err != nil {
		return s.res, err
	}
	if err := s.makeWork(); err != nil {
		return s.res, err
	}
	if s.opts.WorkDir == "" {
		defer os.RemoveAll(s.work)
	}
	prev, err := s.preCopy()
	if err != nil {
		return s.res, err
	}
	if prev == "" {
		s.learnLayouts()
	}
	if s.opts.Lazy {
		if err := s.finalLazy(prev); err != nil {
			return s.res, err
		}
		s.res.Total = time.Since(s.start)
		return s.res, nil
	}
	if err := s.final(prev); err != nil {
		return s.res, err
	}
	if s.same && !s.held {
		if err := s.handOverLocal(); err != nil {
			return s.res, err
		}
	}
	s.res.Total = time.Since(s.start)
	return s.res, nil
}

// hello checks the destination's version and learns whether it runs on
// this host.
func (s *source) hello() error {
	boot, err := bootID()
	if err != nil {
		return err
	}
	hello := Msg{Op: opHello, Version: Version, BootID: boot, ShellJob: s.opts.ShellJob,
		TCPEstablished: s.opts.TCPEstablished, TCPClose: s.opts.TCPClose, FileLocks: s.opts.FileLocks}
	if err := s.ch.send(hello); err != nil {
		return err
	}
	m, err := s.ch.expect(opOK, s.answerTimeout())
	if err != nil {
		return fmt.Errorf("hello: %w", err)
	}
	if m.Version != Version {
		return fmt.Errorf("the destination speaks version %d of the protocol, this amber %d", m.Version, Version)
	}
	s.same = m.BootID == boot && !s.opts.TwoHosts
	s.res.SameHost = s.same
	s.dest = m.Dir
	if s.same && s.opts.Lazy {
		if err := checkLazyHost(s.opts.Pid); err != nil {
			return err
		}
	}
	if !s.opts.Lazy {
		s.held = !s.same || checkLazyHost(s.opts.Pid) == nil
	}
	s.res.Handover = s.handover()
	s.log.Infof("migrate: destination %s (same host: %v), images into %s; handover: %s", s.opts.To, s.same, m.Dir, s.res.Handover)
	return nil
}

// handover names the handover hello chose, and why for the kill-first
// one, whose limit is inherent: a restore with the tree's very PIDs
// while its frozen source holds them.
func (s *source) handover() string {
	switch {
	case s.opts.Lazy:
		return "lazy"
	case s.held:
		return "held"
	}
	return fmt.Sprintf("kill-first (one host, and pid %d is not the init of a pid namespace of its own: "+
		"its restore needs the PIDs its frozen tree holds here, so the tree is killed before it, and restored with all its memory)", s.opts.Pid)
}

// makeWork makes the directory of the source's own images.
func (s *source) makeWork() error {
	if s.opts.WorkDir != "" {
		s.work = s.opts.WorkDir
		return os.MkdirAll(s.work, 0o700)
	}
	dir, err := os.MkdirTemp("", "amber-migrate-*")
	s.work = dir
	return err
}

// answerTimeout bounds a wait for the destination, which may be
// restoring or writing many pages.
func (s *source) answerTimeout() time.Duration {
	return max(6*s.opts.Timeout, time.Minute)
}

// preCopy pre-dumps the running tree until the pages each sends stop
// shrinking, and returns the name of the last one ("" for none).
func (s *source) preCopy() (string, error) {
	prev := ""
	for i := 1; i <= s.opts.MaxIters; i++ {
		name := fmt.Sprintf("pre-%d", i)
		pages, err := s.transfer(name, prev, nil)
		if err != nil {
			return prev, fmt.Errorf("pre-dump %d: %w", i, err)
		}
		s.res.PreDumps = append(s.res.PreDumps, pages)
		s.fault("pre-dumped")
		s.log.Infof("migrate: pre-dump %d sent %d pages", i, pages)
		prev = name
		if n := len(s.res.PreDumps); pages <= s.opts.MinPages ||
			(n > 1 && pages > s.res.PreDumps[n-2]-s.res.PreDumps[n-2]/minIterGain) {
			break
		}
	}
	return prev, nil
}

// transfer runs one dump of the chain named name on top of prev: its
// pages go to the destination's page server session, its other images
// here. A pre-dump (notify nil) returns the pages the destination got.
func (s *source) transfer(name, prev string, notify func(string) error) (uint64, error) {
	s.sent = append(s.sent, name)
	if err := s.ch.send(Msg{Op: opPages, Dir: name, Parent: prev}); err != nil {
		return 0, err
	}
	if _, err := s.ch.expect(opOK, s.answerTimeout()); err != nil {
		return 0, err
	}
	local := filepath.Join(s.work, name)
	if err := os.Mkdir(local, 0o700); err != nil {
		return 0, err
	}
	// The final dump reads the tracking of the pre-dumps, if any, but
	// starts none: arming it costs the frozen tree time (60 ms for 1 GiB).
	track := notify == nil || prev != ""
	o := dump.Options{Pid: s.opts.Pid, ImagesDir: local, PreDump: notify == nil, TrackMem: track,
		PageServer: s.opts.To, ShellJob: s.opts.ShellJob, TCPEstablished: s.opts.TCPEstablished,
		TCPClose: s.opts.TCPClose, FileLocks: s.opts.FileLocks, GhostLimit: s.opts.GhostLimit,
		Timeout: s.opts.Timeout, Log: s.log, Notify: notify, Layouts: s.layouts}
	if prev != "" {
		o.PrevImagesDir = filepath.Join("..", prev)
	}
	if notify != nil {
		o.Freezing = func() { s.frozen = time.Now() }
	}
	if notify != nil && s.opts.Lazy {
		o.LazyDial, o.Fault = s.dialLazy, s.opts.Fault
	}
	if err := dump.Run(o); err != nil {
		return 0, err
	}
	if notify != nil {
		return s.res.Final, nil
	}
	return s.pagesReceived()
}

// fault calls the Fault hook, if any.
func (s *source) fault(point string) {
	if s.opts.Fault != nil {
		s.opts.Fault(point)
	}
}

// pagesReceived reads the destination's answer to a page session.
func (s *source) pagesReceived() (uint64, error) {
	m, err := s.ch.expect(opOK, s.answerTimeout())
	return m.Pages, err
}

// errDestination marks a failure the destination reported or caused.
var errDestination = errors.New("destination failed")
