package swrk

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/checkpoint-restore/go-criu/v8/rpc"
	"golang.org/x/sys/unix"

	"amber/internal/cgroups"
	"amber/internal/files"
	"amber/internal/namespaces"
	"amber/internal/netfilter"
)

// defaultLogFile is the log of a request without log_file, in the work
// directory, named as CRIU names it.
const defaultLogFile = "criu.log"

// settings is what one DUMP, PRE_DUMP, RESTORE or CHECK request asks, in amber's
// terms: the paths, the log, and the options of dump.Run or restore.Run.
type settings struct {
	imagesDir string // path of the images directory ("" for a CHECK without one)
	workDir   string // the work directory: the log and stats-dump go there
	logPath   string // "" logs to stderr
	logLevel  int
	notify    bool // notify_scripts: NOTIFY round trips at the action-script points

	pid            int // a dump's or pre-dump's root of the tree
	leaveRunning   bool
	shellJob       bool
	tcpEstablished bool
	tcpClose       bool
	extUnixSk      bool
	fileLocks      bool
	linkRemap      bool
	// tcpSkipInFlight leaves connections not yet accepted out of a dump.
	tcpSkipInFlight bool
	ghostLimit      int64
	timeout         time.Duration
	root            string            // the root of the tree's mount namespace
	extMounts       map[string]string // ext_mnt: key to value, as --external mnt[KEY]:VAL
	cgMode          cgroups.Mode      // manage_cgroups, manage_cgroups_mode
	cgRoots         []cgroups.Root    // cg_root
	freezeCgroup    string            // freeze_cgroup
	cgYard          string            // cgroup_yard, a relative one in the work directory
	emptyNet        bool              // empty_ns = CLONE_NEWNET
	// orphanPts: a pty slave whose master is outside the tree is dumped,
	// and its new master goes to the client on restore
	// (orphan_pts_master).
	orphanPts bool
	// rstSibling: the restored root must be the client's child, as CRIU
	// makes it with CLONE_PARENT. amber's root is amber's child until
	// the session ends and amber exits; the kernel then gives it to the
	// nearest child subreaper above amber: the client, which runc is
	// while it restores (unless --no-subreaper).
	rstSibling bool
	// inheritFds are inherit_fd: amber's descriptors, which it got from
	// the client as CRIU's swrk does (the client starts amber with them
	// open), standing in for files of the images.
	inheritFds []files.InheritFd
	// extNet is external's net[INO]:KEY (runc's for a container whose
	// network namespace has a path).
	extNet namespaces.ExtNet
	// extVeths are the outside ends of the tree's veths: external's
	// veth[IFNAME]:OUTNAME[@BRIDGE] and veths.
	extVeths map[string]namespaces.ExtVeth
	// lazyPages: a restore leaves private anonymous memory to amber
	// lazy-pages; a dump leaves it out of the images and serves it at
	// lazyAddr (ps's address and port), as CRIU's service does.
	lazyPages bool
	lazyAddr  string
	// trackMem is track_mem: the dump tracks the pages written after
	// it, for a dump on top (always, for a pre-dump, as in CRIU).
	trackMem bool
	// parentImg is parent_img: the images of the dump before, a path
	// relative to the images directory, as --prev-images-dir.
	parentImg string
	// pageServer is where the pages of a dump that is not lazy go (ps:
	// --page-server --address --port).
	pageServer string
	// A PAGE_SERVER request's server listens on psListen (ps's address
	// and port), or with psFdSet serves psFd (ps.fd, a connection the
	// client made and amber inherited), which a dump's pages go to
	// instead of pageServer; psPort is the port it answers.
	psListen string
	psFd     int
	psFdSet  bool
	psPort   int32
	// netLock is network_lock (IPTABLES, CRIU's default, if not set),
	// netLockSet whether it was.
	netLock    netfilter.Method
	netLockSet bool
}

// errBadRequest marks requests amber refuses before doing anything; the
// response then carries CRIU's errno for them, EBADRQC.
var errBadRequest = errors.New("bad request")

// translate turns the options of a request of type kind from the client
// with PID peer into settings, or an error naming every option amber
// cannot honour; the settings then hold the log's path, when it could be
// found, for the error to be logged where the client looks. It looks at
// no process, and at no file but config_file's.
func translate(kind rpc.CriuReqType, o *rpc.CriuOpts, peer int) (settings, error) {
	if o == nil {
		s := settings{logLevel: int(o.GetLogLevel())} // CRIU's default, 2
		if kind == rpc.CriuReqType_CHECK {
			return s, nil
		}
		return s, fmt.Errorf("%w: %s request without opts", errBadRequest, kind)
	}
	var problems []string
	for _, r := range refusals() {
		if r.appliesTo(kind) && r.set(o) {
			problems = append(problems, r.field+": "+r.reason)
		}
	}
	s, err := paths(kind, o, peer)
	if err != nil {
		problems = append(problems, err.Error())
	}
	cgMode, cgRoots, err := cgroupOpts(o)
	if err != nil {
		problems = append(problems, err.Error())
	}
	extNet, err := externalOpts(o)
	if err != nil {
		problems = append(problems, err.Error())
	}
	extVeths, err := vethOpts(o)
	if err != nil {
		problems = append(problems, err.Error())
	}
	lazyAddr, err := lazyOpts(kind, o)
	if err != nil {
		problems = append(problems, err.Error())
	}
	if err := s.pageServerOpts(kind, o); err != nil {
		problems = append(problems, err.Error())
	}
	if err := s.serverOpts(kind, o); err != nil {
		problems = append(problems, err.Error())
	}
	if o.GetLazyPages() && isDump(kind) && kind != rpc.CriuReqType_DUMP {
		problems = append(problems, fmt.Sprintf("lazy_pages: an option of dumps and restores, not of a %s", kind))
	}
	if isDump(kind) && o.Pid == nil {
		problems = append(problems, "pid: not set: amber cannot dump the requesting process itself (its tree holds amber); give the PID of the tree to dump")
	}
	if len(problems) > 0 {
		return s, fmt.Errorf("%w: %s", errBadRequest, strings.Join(problems, "; "))
	}
	s.pid = int(o.GetPid())
	s.leaveRunning = o.GetLeaveRunning()
	s.shellJob = o.GetShellJob()
	s.tcpEstablished = o.GetTcpEstablished()
	s.tcpClose = o.GetTcpClose()
	s.extUnixSk = o.GetExtUnixSk()
	s.fileLocks = o.GetFileLocks()
	s.linkRemap = o.GetLinkRemap()
	s.tcpSkipInFlight = o.GetTcpSkipInFlight()
	s.netLock, s.netLockSet = netLockMethod(o)
	s.ghostLimit = int64(o.GetGhostLimit())
	s.timeout = time.Duration(o.GetTimeout()) * time.Second
	s.notify = o.GetNotifyScripts()
	s.root = o.GetRoot()
	for _, m := range o.ExtMnt {
		if s.extMounts == nil {
			s.extMounts = map[string]string{}
		}
		s.extMounts[m.GetKey()] = m.GetVal()
	}
	s.cgMode, s.cgRoots, s.freezeCgroup = cgMode, cgRoots, o.GetFreezeCgroup()
	s.cgYard = o.GetCgroupYard()
	if s.cgYard != "" && !filepath.IsAbs(s.cgYard) {
		// Not filepath.Join: the work directory is a descriptor's magic
		// link (/proc/PEER/fd/N), which the kernel must follow before a
		// ".." of the yard's path is taken, as CRIU's service resolves
		// it from the work directory it changed into.
		s.cgYard = s.workDir + "/" + s.cgYard
	}
	s.emptyNet = o.GetEmptyNs()&emptyNsNet != 0
	s.orphanPts = o.GetOrphanPtsMaster()
	s.rstSibling = kind == rpc.CriuReqType_RESTORE && o.GetRstSibling()
	s.extNet = extNet
	s.extVeths = extVeths
	s.lazyPages, s.lazyAddr = o.GetLazyPages(), lazyAddr
	s.trackMem = o.GetTrackMem() || kind == rpc.CriuReqType_PRE_DUMP || kind == rpc.CriuReqType_SINGLE_PRE_DUMP
	s.parentImg = o.GetParentImg()
	for _, in := range o.InheritFd {
		s.inheritFds = append(s.inheritFds, files.InheritFd{Key: in.GetKey(), Fd: int(in.GetFd())})
	}
	return s, nil
}

// lazyOpts reads where a lazy dump serves its pages: ps's address (every
// address without) and port, which it needs.
func lazyOpts(kind rpc.CriuReqType, o *rpc.CriuOpts) (string, error) {
	if kind != rpc.CriuReqType_DUMP || !o.GetLazyPages() {
		return "", nil
	}
	if o.Ps == nil || o.Ps.GetPort() <= 0 || o.Ps.GetPort() > 65535 {
		return "", fmt.Errorf("lazy_pages: a lazy dump serves its pages on ps's address and port; ps.port is %d", o.Ps.GetPort())
	}
	return net.JoinHostPort(o.Ps.GetAddress(), strconv.Itoa(int(o.Ps.GetPort()))), nil
}

// pageServerOpts reads where a dump or pre-dump without lazy_pages
// sends its pages: over ps.fd, a connection made already, or to ps's
// address and port, both needed.
func (s *settings) pageServerOpts(kind rpc.CriuReqType, o *rpc.CriuOpts) error {
	if !isDump(kind) || o.Ps == nil || o.GetLazyPages() {
		return nil
	}
	ps := o.GetPs()
	switch {
	case ps.Fd != nil:
		s.psFd, s.psFdSet = int(ps.GetFd()), true
		return nil
	case ps.GetAddress() == "":
		return errors.New("ps.address: a dump to a page server needs its address")
	case ps.GetPort() <= 0 || ps.GetPort() > 65535:
		return fmt.Errorf("ps.port: %d is no port", ps.GetPort())
	}
	s.pageServer = net.JoinHostPort(ps.GetAddress(), strconv.Itoa(int(ps.GetPort())))
	return nil
}

// serverOpts reads where a PAGE_SERVER or PAGE_SERVER_CHLD request's
// page server takes its dump: ps.fd, as CRIU's service takes it, or ps's
// address (every address without) and port.
func (s *settings) serverOpts(kind rpc.CriuReqType, o *rpc.CriuOpts) error {
	if kind != rpc.CriuReqType_PAGE_SERVER && kind != rpc.CriuReqType_PAGE_SERVER_CHLD {
		return nil
	}
	ps := o.GetPs()
	s.psPort = ps.GetPort()
	switch {
	case ps == nil:
		return fmt.Errorf("ps: a %s request needs ps, where its page server listens", kind)
	case ps.Fd != nil:
		s.psFd, s.psFdSet = int(ps.GetFd()), true
		return nil
	case ps.GetPort() <= 0 || ps.GetPort() > 65535:
		return fmt.Errorf("ps.port: %d: amber's page server needs a port to listen on (or ps.fd)", ps.GetPort())
	}
	s.psListen = net.JoinHostPort(ps.GetAddress(), strconv.Itoa(int(ps.GetPort())))
	return nil
}

// isDump says whether a request of type kind dumps a tree: DUMP and the
// pre-dumps.
func isDump(kind rpc.CriuReqType) bool {
	switch kind {
	case rpc.CriuReqType_DUMP, rpc.CriuReqType_PRE_DUMP, rpc.CriuReqType_SINGLE_PRE_DUMP:
		return true
	}
	return false
}

// cgroupOpts reads the cgroup options as CRIU's service does: the mode
// (manage_cgroups, manage_cgroups_mode) and the new roots (cg_root).
func cgroupOpts(o *rpc.CriuOpts) (cgroups.Mode, []cgroups.Root, error) {
	mode, err := cgroups.ModeOfRPC(o)
	if err != nil {
		return 0, nil, err
	}
	var roots []cgroups.Root
	for _, r := range o.GetCgRoot() {
		if !strings.HasPrefix(r.GetPath(), "/") {
			return 0, nil, fmt.Errorf("cg_root: %q is not an absolute path", r.GetPath())
		}
		roots = append(roots, cgroups.Root{Controller: r.GetCtrl(), Path: r.GetPath()})
	}
	return mode, roots, nil
}

// externalOpts reads external: a network namespace net[INO]:KEY is
// honoured, veth[...] is vethOpts's, other kinds are not supported yet.
func externalOpts(o *rpc.CriuOpts) (namespaces.ExtNet, error) {
	var ext namespaces.ExtNet
	for _, val := range o.GetExternal() {
		e, ok, err := namespaces.ParseExtNet(val)
		if _, _, veth, _ := namespaces.ParseExtVeth(val); veth {
			continue // vethOpts's
		}
		switch {
		case err != nil:
			return ext, err
		case !ok:
			return ext, fmt.Errorf("external: %q: not supported yet (only net[INODE]:KEY is)", val)
		case ext.Key != "":
			return ext, fmt.Errorf("external: %q: a second network namespace", val)
		}
		ext = e
	}
	return ext, nil
}

// vethOpts reads the outside ends of veths, from external's
// veth[IFNAME]:OUTNAME[@BRIDGE] and from veths (if_in, if_out), which
// CRIU's service turns into the same.
func vethOpts(o *rpc.CriuOpts) (map[string]namespaces.ExtVeth, error) {
	vals := slices.Clone(o.GetExternal())
	for _, v := range o.GetVeths() {
		vals = append(vals, "veth["+v.GetIfIn()+"]:"+v.GetIfOut())
	}
	var out map[string]namespaces.ExtVeth
	for _, val := range vals {
		name, ext, ok, err := namespaces.ParseExtVeth(val)
		switch {
		case !ok:
			continue
		case err != nil:
			return nil, err
		case out[name] != (namespaces.ExtVeth{}):
			return nil, fmt.Errorf("external: veth[%s] given twice", name)
		}
		if out == nil {
			out = map[string]namespaces.ExtVeth{}
		}
		out[name] = ext
	}
	return out, nil
}

// paths finds the images directory, the work directory and the log as
// CRIU's cr-service.c does: descriptors are the client's, opened through
// /proc/PEER/fd/N; the work directory defaults to the images directory;
// log_file is a bare name in the work directory.
func paths(kind rpc.CriuReqType, o *rpc.CriuOpts, peer int) (settings, error) {
	s := settings{logLevel: int(o.GetLogLevel())}
	switch {
	case o.GetImagesDirFd() != -1:
		s.imagesDir = peerFd(peer, o.GetImagesDirFd())
	case o.ImagesDir != nil:
		s.imagesDir = o.GetImagesDir()
	case kind != rpc.CriuReqType_CHECK:
		return s, errors.New("images_dir_fd: neither images_dir_fd nor images_dir is set")
	}
	work := s.imagesDir
	if o.WorkDirFd != nil {
		work = peerFd(peer, o.GetWorkDirFd())
	}
	s.workDir = work
	name := o.GetLogFile()
	switch {
	case o.GetLogToStderr() || (kind == rpc.CriuReqType_CHECK && o.LogFile == nil):
		return s, nil
	case strings.Contains(name, "/"):
		return s, fmt.Errorf("log_file: %q: no subdirectories are allowed in log_file (use work_dir_fd)", name)
	case name == "":
		name = defaultLogFile
	}
	if work == "" {
		return s, fmt.Errorf("log_file: %q needs images_dir_fd or work_dir_fd to be written in", name)
	}
	s.logPath = filepath.Join(work, name)
	return s, nil
}

// peerFd is how the service opens the client's descriptor fd.
func peerFd(peer int, fd int32) string {
	return fmt.Sprintf("/proc/%d/fd/%d", peer, fd)
}

// configFileSet says whether config_file names a file that exists: runc
// always names /etc/criu/runc.conf, which CRIU skips when it is missing.
func configFileSet(o *rpc.CriuOpts) bool {
	if o.ConfigFile == nil {
		return false
	}
	_, err := os.Stat(o.GetConfigFile())
	return err == nil
}

// emptyNsNet is empty_ns = CLONE_NEWNET, the only value CRIU allows.
const emptyNsNet = unix.CLONE_NEWNET

// netLockMethod is the network lock network_lock asks for, and whether
// it asks: CRIU's enum counts from 1 where the inventory's counts from 0.
func netLockMethod(o *rpc.CriuOpts) (netfilter.Method, bool) {
	switch o.GetNetworkLock() {
	case rpc.CriuNetworkLockMethod_NFTABLES:
		return netfilter.NFTables, true
	case rpc.CriuNetworkLockMethod_SKIP:
		return netfilter.Skip, true
	}
	return netfilter.IPTables, o.NetworkLock != nil
}
