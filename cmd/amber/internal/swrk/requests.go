package swrk

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/checkpoint-restore/go-criu/v8/rpc"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/dump"
	"amber/internal/image"
	"amber/internal/kerndat"
	"amber/internal/log"
	"amber/internal/restore"
)

// ebadrqc is CRIU's errno for a request it refuses.
const ebadrqc = unix.EBADRQC

// dump answers DUMP, PRE_DUMP and SINGLE_PRE_DUMP (kind): the tree
// rooted at opts.pid is dumped as `amber dump` would, or its memory
// copied as `amber pre-dump` would, with its writes tracked from then
// on, and the tree running on; on failure it runs on. As CRIU's, a
// pre-dump runs no action scripts: notify_scripts, which runc always
// sets, brings no notification; and only a DUMP's answer says whether
// the tree was restored.
func (s *session) dump(kind rpc.CriuReqType, o *rpc.CriuOpts) (*rpc.CriuResp, error) {
	pre := kind != rpc.CriuReqType_DUMP
	answer := func(resp *rpc.CriuResp, err error) (*rpc.CriuResp, error) {
		if pre {
			return resp, err
		}
		return dumpResp(resp, err)
	}
	st, l, closeLog, err := s.begin(kind, o)
	if err != nil {
		return answer(failure(kind, err))
	}
	defer closeLog()
	opts, err := s.dumpOptions(st, l)
	if err != nil {
		return answer(failure(kind, err))
	}
	defer closeConn(opts.PageServerConn)
	what, done := "dump", "Dumping finished successfully"
	if pre {
		opts.PreDump, opts.Notify = true, nil
		what, done = "pre-dump", "Pre-dumping finished successfully"
	}
	l.Infof("%s (RPC from pid %d): tree %d into %s", what, s.c.peer, st.pid, st.imagesDir)
	if err := dump.Run(opts); err != nil {
		l.Errorf("%v", err)
		return answer(failure(kind, err))
	}
	l.Infof("%s", done)
	return answer(&rpc.CriuResp{Type: kind.Enum(), Success: proto.Bool(true)}, nil)
}

// dumpOptions are the options of dump.Run that st asks for, logging to
// l. A page server's connection (ps.fd) is a copy of amber's
// descriptor, which the caller closes (closeConn): the next request may
// use the descriptor again, as go-criu's phaul does.
func (s *session) dumpOptions(st settings, l *log.Logger) (dump.Options, error) {
	opts := dump.Options{
		Pid: st.pid, ImagesDir: st.imagesDir, LeaveRunning: st.leaveRunning, ShellJob: st.shellJob,
		TCPEstablished: st.tcpEstablished, TCPClose: st.tcpClose, FileLocks: st.fileLocks, LinkRemap: st.linkRemap, TCPSkipInFlight: st.tcpSkipInFlight, GhostLimit: st.ghostLimit, Timeout: st.timeout, Log: l,
		ExtMounts:     st.extMounts,
		ManageCgroups: st.cgMode, FreezeCgroup: st.freezeCgroup, EmptyNet: st.emptyNet, CgroupYard: st.cgYard,
		ExtUnixSk: st.extUnixSk, OrphanPtsMaster: st.orphanPts, ExtNet: st.extNet, StatsDir: st.workDir,
		LazyPages: st.lazyAddr, NetworkLock: st.netLock, NetworkLockSet: st.netLockSet,
		TrackMem: st.trackMem, PrevImagesDir: st.parentImg, PageServer: st.pageServer,
	}
	if st.notify {
		opts.Notify = func(action string) error { return s.c.notify(action, 0) }
		// CRIU's status-ready: a lazy dump serves its pages. runc
		// writes its --status-fd then, for whoever waits to start the
		// lazy-pages daemon.
		opts.LazyReady = func() error { return s.c.notify("status-ready", 0) }
	}
	if st.psFdSet {
		f, err := dupPsFd(st.psFd)
		if err != nil {
			return opts, err
		}
		opts.PageServerConn = f
	}
	return opts, nil
}

// dupPsFd is a copy of ps.fd, amber's descriptor fd, which the session
// keeps for the requests after this one.
func dupPsFd(fd int) (*os.File, error) {
	nfd, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 3)
	if err != nil {
		return nil, fmt.Errorf("ps.fd %d: %w", fd, err)
	}
	return os.NewFile(uintptr(nfd), fmt.Sprintf("ps.fd %d", fd)), nil
}

// closeConn closes a copy of a page server's connection, if any.
func closeConn(f *os.File) {
	if f != nil {
		f.Close()
	}
}

// dumpResp adds CRIU's dump answer: the dumped tree was not restored.
func dumpResp(resp *rpc.CriuResp, err error) (*rpc.CriuResp, error) {
	resp.Dump = &rpc.CriuDumpResp{Restored: proto.Bool(false)}
	return resp, err
}

// restore answers RESTORE: the images are restored detached, as CRIU's
// service does, and the response carries the root's PID.
func (s *session) restore(o *rpc.CriuOpts) (*rpc.CriuResp, error) {
	kind := rpc.CriuReqType_RESTORE
	st, l, closeLog, err := s.begin(kind, o)
	if err != nil {
		return restoreResp(failure(kind, err))
	}
	defer closeLog()
	opts := restore.Options{
		ImagesDir: st.imagesDir, Detach: true, ShellJob: st.shellJob, TCPEstablished: st.tcpEstablished, TCPClose: st.tcpClose,
		FileLocks: st.fileLocks, Log: l, Root: st.root, ExtMounts: st.extMounts,
		ManageCgroups: st.cgMode, CgroupRoots: st.cgRoots, EmptyNet: st.emptyNet, CgroupYard: st.cgYard,
		ExtUnixSk: st.extUnixSk, InheritFds: st.inheritFds, LazyPages: st.lazyPages,
		ExtVeths: st.extVeths,
	}
	if st.notify {
		opts.Notify = s.c.notify
	}
	if st.orphanPts {
		opts.OrphanPtsMaster = func(master int) error { return s.orphanPtsMaster(st, master) }
	}
	l.Infof("restore (RPC from pid %d): from %s", s.c.peer, st.imagesDir)
	res, err := restore.Run(opts)
	if err != nil {
		l.Errorf("%v", err)
		return restoreResp(failure(kind, err))
	}
	l.Infof("restore: root task %d", res.Pid)
	if st.rstSibling {
		l.Infof("rst_sibling: pid %d goes to the client (pid %d) when amber exits, if the client is a child subreaper (runc is)", res.Pid, s.c.peer)
	}
	resp := &rpc.CriuResp{Type: kind.Enum(), Success: proto.Bool(true), Restore: &rpc.CriuRestoreResp{Pid: proto.Int32(int32(res.Pid))}}
	return resp, nil
}

// orphanPtsMaster hands the new master of a container's terminal to the
// client, in the orphan-pts-master notification, as CRIU does: it
// exists only with notify_scripts (runc forwards the master to its
// --console-socket).
func (s *session) orphanPtsMaster(st settings, master int) error {
	if !st.notify {
		return errors.New("orphan_pts_master: the new pty master goes to the client in the orphan-pts-master notification, which needs notify_scripts")
	}
	return s.c.notifyFd("orphan-pts-master", 0, master)
}

// restoreResp adds CRIU's restore answer to a failure: pid -1.
func restoreResp(resp *rpc.CriuResp, err error) (*rpc.CriuResp, error) {
	resp.Restore = &rpc.CriuRestoreResp{Pid: proto.Int32(-1)}
	return resp, err
}

// check answers CHECK as `amber check` does: success when this kernel
// has every feature amber needs.
func (s *session) check(o *rpc.CriuOpts) (*rpc.CriuResp, error) {
	kind := rpc.CriuReqType_CHECK
	_, l, closeLog, err := s.begin(kind, o)
	if err != nil {
		return failure(kind, err)
	}
	defer closeLog()
	info := kerndat.Probe()
	for _, f := range info.Features() {
		l.Infof("%s", f.Line())
	}
	if missing := info.Missing(); len(missing) > 0 {
		names := make([]string, len(missing))
		for i, f := range missing {
			names[i] = f.Name
		}
		return failure(kind, fmt.Errorf("check: missing required features: %s", strings.Join(names, ", ")))
	}
	return &rpc.CriuResp{Type: kind.Enum(), Success: proto.Bool(true)}, nil
}

// featureCheck answers FEATURE_CHECK: each feature asked for is true if
// amber can use it here, as CRIU answers (false for those not asked).
// mem_track is `amber check --feature mem_dirty_track` (amber's tracking
// by userfaultfd write protection, true here without soft-dirty), lazy_pages
// `--feature uffd-noncoop` (CRIU's test). pidfd_store is false whatever
// the kernel has: amber refuses pidfd_store_sk, so a client that relied
// on it would fail.
func featureCheck(asked *rpc.CriuFeatures) *rpc.CriuResp {
	got := &rpc.CriuFeatures{MemTrack: proto.Bool(false), LazyPages: proto.Bool(false), PidfdStore: proto.Bool(false)}
	if asked.GetMemTrack() {
		got.MemTrack = proto.Bool(kerndat.Probe().CheckFeature("mem_dirty_track") == nil)
	}
	if asked.GetLazyPages() {
		got.LazyPages = proto.Bool(kerndat.Probe().CheckFeature("uffd-noncoop") == nil)
	}
	return &rpc.CriuResp{Type: rpc.CriuReqType_FEATURE_CHECK.Enum(), Success: proto.Bool(true), Features: got}
}

// begin translates a request and opens its log. A refused request is
// logged too, where its log would have been: runc shows the client the
// log, not cr_errmsg.
func (s *session) begin(kind rpc.CriuReqType, o *rpc.CriuOpts) (settings, *log.Logger, func(), error) {
	st, err := translate(kind, o, s.c.peer)
	l, closeLog, lerr := openLog(st)
	if lerr != nil {
		return st, nil, nil, errors.Join(err, lerr)
	}
	if err != nil {
		l.Errorf("%v", err)
		closeLog()
		return st, nil, nil, err
	}
	return st, l, closeLog, nil
}

// openLog opens the request's log: a file created anew, never through a
// symbolic link (image.CreateLog), or stderr.
func openLog(st settings) (*log.Logger, func(), error) {
	if st.logPath == "" {
		return log.New(os.Stderr, nil, st.logLevel), func() {}, nil
	}
	f, err := image.CreateLog(st.logPath)
	if err != nil {
		return nil, nil, fmt.Errorf("log_file: %w", err)
	}
	return log.New(f, nil, st.logLevel), func() { f.Close() }, nil
}
