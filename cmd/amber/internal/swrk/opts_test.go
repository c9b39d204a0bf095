package swrk

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/checkpoint-restore/go-criu/v8/rpc"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"amber/internal/cgroups"
	"amber/internal/files"
	"amber/internal/namespaces"
	"amber/internal/netfilter"
)

// TestTranslateDump: what go-criu's users send for a dump becomes amber's
// options, the client's descriptors opened through /proc/PEER/fd.
func TestTranslateDump(t *testing.T) {
	o := &rpc.CriuOpts{
		ImagesDirFd: proto.Int32(5), WorkDirFd: proto.Int32(7), Pid: proto.Int32(1234),
		LeaveRunning: proto.Bool(true), ShellJob: proto.Bool(true), TcpEstablished: proto.Bool(true),
		LogFile: proto.String("dump.log"), LogLevel: proto.Int32(4), NotifyScripts: proto.Bool(true),
		GhostLimit: proto.Uint32(4096), Timeout: proto.Uint32(3), FileLocks: proto.Bool(true), ExtUnixSk: proto.Bool(true), LinkRemap: proto.Bool(true), TcpSkipInFlight: proto.Bool(true),
		ManageCgroupsMode: rpc.CriuCgMode_FULL.Enum(), FreezeCgroup: proto.String("/sys/fs/cgroup/freezer/c1"),
		CgRoot:     []*rpc.CgroupRoot{{Ctrl: proto.String("cpu"), Path: proto.String("/c2")}},
		CgroupYard: proto.String("../yard"),
		// Harmless: amber behaves so anyway.
		EmptyNs: proto.Uint32(unix.CLONE_NEWNET), Root: proto.String("/"), RstSibling: proto.Bool(true),
	}
	got, err := translate(rpc.CriuReqType_DUMP, o, 42)
	if err != nil {
		t.Fatal(err)
	}
	want := settings{
		imagesDir: "/proc/42/fd/5", workDir: "/proc/42/fd/7", logPath: "/proc/42/fd/7/dump.log", logLevel: 4, notify: true,
		pid: 1234, leaveRunning: true, shellJob: true, tcpEstablished: true, fileLocks: true, linkRemap: true, tcpSkipInFlight: true, extUnixSk: true, ghostLimit: 4096, timeout: 3 * time.Second,
		root:   "/",
		cgMode: cgroups.Full, cgRoots: []cgroups.Root{{Controller: "cpu", Path: "/c2"}}, freezeCgroup: "/sys/fs/cgroup/freezer/c1",
		cgYard:   "/proc/42/fd/7/../yard",
		emptyNet: true,
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
}

// TestTranslateDefaults: CRIU's defaults and fallbacks.
func TestTranslateDefaults(t *testing.T) {
	got, err := translate(rpc.CriuReqType_RESTORE, &rpc.CriuOpts{ImagesDir: proto.String("/img")}, 42)
	if err != nil {
		t.Fatal(err)
	}
	want := settings{imagesDir: "/img", workDir: "/img", logPath: "/img/criu.log", logLevel: 2, ghostLimit: 1 << 20}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	got, err = translate(rpc.CriuReqType_CHECK, nil, 42)
	if err != nil || got.logPath != "" {
		t.Fatalf("CHECK without opts: %+v, %v; want a log on stderr", got, err)
	}
	got, err = translate(rpc.CriuReqType_DUMP, &rpc.CriuOpts{ImagesDirFd: proto.Int32(3), Pid: proto.Int32(9), LogToStderr: proto.Bool(true)}, 42)
	if err != nil || got.logPath != "" {
		t.Fatalf("log_to_stderr: %+v, %v; want a log on stderr", got, err)
	}
}

// TestTranslateBad: requests amber cannot carry out name the option at
// fault, and are marked as bad requests.
func TestTranslateBad(t *testing.T) {
	for _, tc := range []struct {
		name string
		kind rpc.CriuReqType
		opts *rpc.CriuOpts
		want []string
	}{
		{"no images dir", rpc.CriuReqType_DUMP, &rpc.CriuOpts{Pid: proto.Int32(1)}, []string{"images_dir_fd"}},
		{"no pid", rpc.CriuReqType_DUMP, &rpc.CriuOpts{ImagesDirFd: proto.Int32(3)}, []string{"pid: not set"}},
		{"log in a subdir", rpc.CriuReqType_RESTORE, &rpc.CriuOpts{ImagesDirFd: proto.Int32(3), LogFile: proto.String("a/b.log")}, []string{"log_file", "a/b.log"}},
		{"no opts", rpc.CriuReqType_DUMP, nil, []string{"without opts"}},
		{"cgroup mode", rpc.CriuReqType_RESTORE, &rpc.CriuOpts{ImagesDirFd: proto.Int32(3), ManageCgroupsMode: rpc.CriuCgMode(42).Enum()}, []string{"manage_cgroups_mode: unknown mode 42"}},
		{"cgroup root", rpc.CriuReqType_RESTORE, &rpc.CriuOpts{ImagesDirFd: proto.Int32(3), CgRoot: []*rpc.CgroupRoot{{Path: proto.String("c2")}}}, []string{"cg_root: \"c2\""}},
		{"cgroup props", rpc.CriuReqType_DUMP, &rpc.CriuOpts{ImagesDirFd: proto.Int32(3), Pid: proto.Int32(1), CgroupProps: proto.String("x")}, []string{"cgroup_props: not supported"}},
		{"empty_ns pid", rpc.CriuReqType_DUMP, &rpc.CriuOpts{ImagesDirFd: proto.Int32(3), Pid: proto.Int32(1), EmptyNs: proto.Uint32(unix.CLONE_NEWPID)}, []string{"empty_ns: only CLONE_NEWNET"}},
		{"pre-dump without pid", rpc.CriuReqType_PRE_DUMP, &rpc.CriuOpts{ImagesDirFd: proto.Int32(3)}, []string{"pid: not set"}},
		{"lazy pre-dump", rpc.CriuReqType_PRE_DUMP, &rpc.CriuOpts{ImagesDirFd: proto.Int32(3), Pid: proto.Int32(1), LazyPages: proto.Bool(true)}, []string{"lazy_pages", "PRE_DUMP"}},
		{"page server without address", rpc.CriuReqType_DUMP, &rpc.CriuOpts{ImagesDirFd: proto.Int32(3), Pid: proto.Int32(1), Ps: &rpc.CriuPageServerInfo{Port: proto.Int32(27)}}, []string{"ps.address"}},
		{"page server without port", rpc.CriuReqType_SINGLE_PRE_DUMP, &rpc.CriuOpts{ImagesDirFd: proto.Int32(3), Pid: proto.Int32(1), Ps: &rpc.CriuPageServerInfo{Address: proto.String("::1")}}, []string{"ps.port: 0"}},
		{"dump options on restore", rpc.CriuReqType_RESTORE, &rpc.CriuOpts{ImagesDirFd: proto.Int32(3), TrackMem: proto.Bool(true), ParentImg: proto.String("../pre"),
			Ps: &rpc.CriuPageServerInfo{Address: proto.String("::1"), Port: proto.Int32(27)}}, []string{"track_mem: an option of pre-dumps", "parent_img", "ps"}},
		{"page server without ps", rpc.CriuReqType_PAGE_SERVER, &rpc.CriuOpts{ImagesDirFd: proto.Int32(3)}, []string{"ps: a PAGE_SERVER request needs ps"}},
		{"page server on port 0", rpc.CriuReqType_PAGE_SERVER_CHLD, &rpc.CriuOpts{ImagesDirFd: proto.Int32(3), Ps: &rpc.CriuPageServerInfo{Address: proto.String("::1")}}, []string{"ps.port: 0"}},
		{"auto_dedup", rpc.CriuReqType_DUMP, &rpc.CriuOpts{ImagesDirFd: proto.Int32(3), Pid: proto.Int32(1), ParentImg: proto.String("../pre"), AutoDedup: proto.Bool(true)}, []string{"auto_dedup"}},
		{"inherit_fd on dump", rpc.CriuReqType_DUMP, func() *rpc.CriuOpts {
			o := runcOpts()
			o.InheritFd = []*rpc.InheritFd{{Key: proto.String("pipe:[123]"), Fd: proto.Int32(5)}}
			return o
		}(), []string{"inherit_fd: an option of restore only"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := translate(tc.kind, tc.opts, 42)
			if !errors.Is(err, errBadRequest) {
				t.Fatalf("got %v; want a bad request", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %q", err, w)
				}
			}
		})
	}
}

// TestTranslatePreDump: runc's pre-dumps and the dump on top of them
// (`runc checkpoint --pre-dump`, `--parent-path`), and a dump to a page
// server (`--page-server`): a pre-dump always tracks memory, as CRIU's;
// parent_img stays relative to the images directory, which the dump
// resolves.
func TestTranslatePreDump(t *testing.T) {
	o := runcOpts()
	o.ParentImg = proto.String("../pre1")
	s, err := translate(rpc.CriuReqType_PRE_DUMP, o, 42)
	if err != nil {
		t.Fatalf("runc's pre-dump options: %v", err)
	}
	if !s.trackMem || s.parentImg != "../pre1" || s.pageServer != "" {
		t.Errorf("pre-dump: track_mem %v, parent_img %q, page server %q; want true, ../pre1, none", s.trackMem, s.parentImg, s.pageServer)
	}
	o.TrackMem = proto.Bool(false)
	if s, err = translate(rpc.CriuReqType_SINGLE_PRE_DUMP, o, 42); err != nil || !s.trackMem {
		t.Errorf("single pre-dump with track_mem false: tracks %v (%v); want it tracking", s.trackMem, err)
	}
	if s, err = translate(rpc.CriuReqType_DUMP, o, 42); err != nil || s.trackMem {
		t.Errorf("dump with track_mem false: tracks %v (%v)", s.trackMem, err)
	}
	o.TrackMem = proto.Bool(true)
	o.Ps = &rpc.CriuPageServerInfo{Address: proto.String("::1"), Port: proto.Int32(27)}
	if s, err = translate(rpc.CriuReqType_DUMP, o, 42); err != nil || !s.trackMem || s.pageServer != "[::1]:27" {
		t.Errorf("dump to a page server: track_mem %v, page server %q (%v); want true, [::1]:27", s.trackMem, s.pageServer, err)
	}
	o.Ps.Fd = proto.Int32(9)
	if s, err = translate(rpc.CriuReqType_PRE_DUMP, o, 42); err != nil || s.pageServer != "" || !s.psFdSet || s.psFd != 9 {
		t.Errorf("pre-dump to a page server on ps.fd: page server %q, ps.fd %v %d (%v); want descriptor 9", s.pageServer, s.psFdSet, s.psFd, err)
	}
	o.Ps.Fd = nil
	o.LazyPages = proto.Bool(true)
	if s, err = translate(rpc.CriuReqType_DUMP, o, 42); err != nil || s.pageServer != "" || s.lazyAddr != "[::1]:27" {
		t.Errorf("lazy dump: page server %q, lazy pages at %q (%v); want none, [::1]:27", s.pageServer, s.lazyAddr, err)
	}
}

// TestTranslatePageServer: a PAGE_SERVER request's server listens on
// ps's address and port, or serves ps.fd, amber's inherited descriptor;
// parent_img links its images to those of the dump before.
func TestTranslatePageServer(t *testing.T) {
	o := &rpc.CriuOpts{ImagesDirFd: proto.Int32(3), ParentImg: proto.String("../pre1"),
		Ps: &rpc.CriuPageServerInfo{Address: proto.String("10.0.0.2"), Port: proto.Int32(27000)}}
	s, err := translate(rpc.CriuReqType_PAGE_SERVER, o, 42)
	if err != nil || s.psListen != "10.0.0.2:27000" || s.psFdSet || s.psPort != 27000 || s.parentImg != "../pre1" {
		t.Errorf("page server: %+v (%v); want it listening on 10.0.0.2:27000 into a chain on ../pre1", s, err)
	}
	o.Ps = &rpc.CriuPageServerInfo{Fd: proto.Int32(9)}
	if s, err = translate(rpc.CriuReqType_PAGE_SERVER_CHLD, o, 42); err != nil || !s.psFdSet || s.psFd != 9 || s.psListen != "" {
		t.Errorf("page server on ps.fd: %+v (%v); want it serving descriptor 9", s, err)
	}
}

// TestTranslateRuncDump: every option runc 1.1 sets on a dump is taken,
// orphan_pts_master with them.
func TestTranslateRuncDump(t *testing.T) {
	s, err := translate(rpc.CriuReqType_DUMP, runcOpts(), 42)
	if err != nil {
		t.Fatalf("runc's dump options: %v", err)
	}
	if !s.orphanPts {
		t.Error("orphan_pts_master lost")
	}
}

// TestTranslateRuncRestore: runc's restore is taken, rst_sibling,
// evasive_devices and inherit_fd (amber's own descriptors, which the
// client opened for it, by key) with it.
func TestTranslateRuncRestore(t *testing.T) {
	s, err := translate(rpc.CriuReqType_RESTORE, runcRestoreOpts(), 42)
	if err != nil {
		t.Fatalf("runc's restore options: %v", err)
	}
	if !s.rstSibling || !s.orphanPts {
		t.Errorf("rst_sibling %v, orphan_pts_master %v: lost", s.rstSibling, s.orphanPts)
	}
	if want := []files.InheritFd{{Key: "pipe:[123]", Fd: 5}}; !reflect.DeepEqual(s.inheritFds, want) {
		t.Errorf("inherit_fd %v, want %v", s.inheritFds, want)
	}
}

// TestTranslateMounts: root and ext_mnt reach the settings, ext_mnt as
// the key-value pairs of --external mnt[KEY]:VAL.
func TestTranslateMounts(t *testing.T) {
	o := &rpc.CriuOpts{ImagesDirFd: proto.Int32(3), Root: proto.String("/run/runc/c1/criu-root"),
		ExtMnt: []*rpc.ExtMountMap{{Key: proto.String("/dev/null"), Val: proto.String("/dev/null")}, {Key: proto.String("k"), Val: proto.String("/v")}}}
	s, err := translate(rpc.CriuReqType_RESTORE, o, 42)
	if err != nil {
		t.Fatal(err)
	}
	if s.root != "/run/runc/c1/criu-root" {
		t.Errorf("root %q", s.root)
	}
	if want := map[string]string{"/dev/null": "/dev/null", "k": "/v"}; !reflect.DeepEqual(s.extMounts, want) {
		t.Errorf("ext_mnt %v, want %v", s.extMounts, want)
	}
}

// TestTranslateVeths: the outside ends of veths come from external's
// veth[IFNAME]:OUTNAME[@BRIDGE] and from veths, as in CRIU's service;
// a veth named twice or a malformed value is a bad request naming it.
func TestTranslateVeths(t *testing.T) {
	o := &rpc.CriuOpts{ImagesDirFd: proto.Int32(3), External: []string{"veth[eth0]:vh0@br0", "net[1]:k"},
		Veths: []*rpc.CriuVethPair{{IfIn: proto.String("eth1"), IfOut: proto.String("vh1")}}}
	s, err := translate(rpc.CriuReqType_RESTORE, o, 42)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]namespaces.ExtVeth{"eth0": {Name: "vh0", Bridge: "br0"}, "eth1": {Name: "vh1"}}
	if !reflect.DeepEqual(s.extVeths, want) || s.extNet.Key != "k" {
		t.Errorf("veths %v, net %v; want %v and k", s.extVeths, s.extNet, want)
	}
	for _, ext := range [][]string{{"veth[eth0]:a", "veth[eth0]:b"}, {"veth[eth0]"}} {
		o.External, o.Veths = ext, nil
		if _, err := translate(rpc.CriuReqType_RESTORE, o, 42); !errors.Is(err, errBadRequest) || !strings.Contains(err.Error(), "veth[eth0]") {
			t.Errorf("external %v: %v; want a bad request naming veth[eth0]", ext, err)
		}
	}
}

// TestTranslateRuncHarmless: of what runc sends on dump, empty_ns
// (network), orphan_pts_master and the options it sets to false are
// accepted.
func TestTranslateRuncHarmless(t *testing.T) {
	_, err := translate(rpc.CriuReqType_DUMP, runcOpts(), 42)
	if err == nil {
		return // everything runc asks is honoured
	}
	for _, name := range []string{"empty_ns", "orphan_pts_master", "leave_running", "ext_unix_sk", "tcp_established", "shell_job", "file_locks", "auto_dedup", "lazy_pages", "config_file"} {
		if strings.Contains(err.Error(), name+":") {
			t.Errorf("%s refused: %v", name, err)
		}
	}
}

// runcOpts is the DUMP request of runc 1.1.5 for a terminal container,
// as ../shared/reference/container-engines.md records it.
func runcOpts() *rpc.CriuOpts {
	return &rpc.CriuOpts{
		ImagesDirFd: proto.Int32(3), Pid: proto.Int32(4242), Root: proto.String("/run/bundle/rootfs"),
		LogLevel: proto.Int32(4), LogFile: proto.String("dump.log"), NotifyScripts: proto.Bool(true),
		ManageCgroups: proto.Bool(true), FreezeCgroup: proto.String("/sys/fs/cgroup/freezer/c1"),
		OrphanPtsMaster: proto.Bool(true), EmptyNs: proto.Uint32(unix.CLONE_NEWNET),
		ConfigFile:   proto.String("/nonexistent/criu/runc.conf"),
		ExtMnt:       []*rpc.ExtMountMap{{Key: proto.String("/dev/null"), Val: proto.String("/dev/null")}},
		LeaveRunning: proto.Bool(false), ExtUnixSk: proto.Bool(false), TcpEstablished: proto.Bool(false),
		ShellJob: proto.Bool(false), FileLocks: proto.Bool(false), AutoDedup: proto.Bool(false), LazyPages: proto.Bool(false),
	}
}

// runcRestoreOpts is runc's RESTORE request.
func runcRestoreOpts() *rpc.CriuOpts {
	o := runcOpts()
	o.Pid = nil
	o.Root = proto.String("/run/runc/c1/criu-root")
	o.RstSibling = proto.Bool(true)
	o.EvasiveDevices = proto.Bool(true)
	o.CgRoot = []*rpc.CgroupRoot{{Path: proto.String("/c2")}}
	o.InheritFd = []*rpc.InheritFd{{Key: proto.String("pipe:[123]"), Fd: proto.Int32(5)}}
	return o
}

// TestUnknownFields: fields of a newer rpc.proto are found, top level
// and inside opts, and named by their numbers.
func TestUnknownFields(t *testing.T) {
	opts, err := (&rpc.CriuOpts{ImagesDirFd: proto.Int32(3), ExtMnt: []*rpc.ExtMountMap{{Key: proto.String("k"), Val: proto.String("v")}}}).MarshalVT()
	if err != nil {
		t.Fatal(err)
	}
	opts = protowire.AppendVarint(protowire.AppendTag(opts, 200, protowire.VarintType), 1)
	var req []byte
	req = protowire.AppendVarint(protowire.AppendTag(req, 1, protowire.VarintType), uint64(rpc.CriuReqType_DUMP))
	req = protowire.AppendBytes(protowire.AppendTag(req, 2, protowire.BytesType), opts)
	req = protowire.AppendString(protowire.AppendTag(req, 99, protowire.BytesType), "x")
	got := unknownFields(req, reflect.TypeFor[rpc.CriuReq](), "")
	if want := []string{"opts.200", "99"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	clean, _ := (&rpc.CriuReq{Type: rpc.CriuReqType_DUMP.Enum(), Opts: runcOpts()}).MarshalVT()
	if got := unknownFields(clean, reflect.TypeFor[rpc.CriuReq](), ""); len(got) != 0 {
		t.Fatalf("a request of known fields has unknown fields %q", got)
	}
}

// TestOrphanPtsMasterNeedsNotify: the new master of a container's
// terminal goes to the client in a notification only: without
// notify_scripts the restore fails, naming both options.
func TestOrphanPtsMasterNeedsNotify(t *testing.T) {
	err := (&session{}).orphanPtsMaster(settings{orphanPts: true}, 0)
	if err == nil || !strings.Contains(err.Error(), "orphan_pts_master") || !strings.Contains(err.Error(), "notify_scripts") {
		t.Fatalf("got %v, want an error naming orphan_pts_master and notify_scripts", err)
	}
}

// TestNetLockMethod: network_lock counts from 1 (rpc.proto), the
// inventory from 0; unset is CRIU's default, iptables, not chosen.
func TestNetLockMethod(t *testing.T) {
	for _, tt := range []struct {
		in   *rpc.CriuNetworkLockMethod
		want netfilter.Method
		set  bool
	}{
		{nil, netfilter.IPTables, false},
		{rpc.CriuNetworkLockMethod_IPTABLES.Enum(), netfilter.IPTables, true},
		{rpc.CriuNetworkLockMethod_NFTABLES.Enum(), netfilter.NFTables, true},
		{rpc.CriuNetworkLockMethod_SKIP.Enum(), netfilter.Skip, true},
	} {
		if m, set := netLockMethod(&rpc.CriuOpts{NetworkLock: tt.in}); m != tt.want || set != tt.set {
			t.Errorf("network_lock %v: %v set %v, want %v set %v", tt.in, m, set, tt.want, tt.set)
		}
	}
}
