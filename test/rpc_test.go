package test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	criu "github.com/checkpoint-restore/go-criu/v8"
	"github.com/checkpoint-restore/go-criu/v8/rpc"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// TestRPC drives `amber swrk` as container engines drive criu: through
// go-criu's client, and through a raw client where go-criu cannot say
// what is needed (unknown requests, every notification).
func TestRPC(t *testing.T) {
	t.Run("version", testRPCVersion)
	t.Run("dump_restore", testRPCDumpRestore)
	t.Run("notify_order", testRPCNotifyOrder)
	t.Run("unknown_request", testRPCUnknownRequest)
	t.Run("refused_options", testRPCRefusedOptions)
	t.Run("failed_dump", testRPCFailedDump)
	t.Run("post_dump_fails", testRPCPostDumpFails)
	t.Run("post_restore_fails", testRPCPostRestoreFails)
	t.Run("pid_namespace", testRPCPidNamespace)
	t.Run("inherit_fd", testRPCInheritFd)
}

// testRPCPidNamespace restores the init of a pid namespace through the
// RPC: the response and the setup-namespaces and post-restore
// notifications carry the restored init's PID in the host's namespace.
func testRPCPidNamespace(t *testing.T) {
	p, _ := lookupProgram("ns_pid")
	p.cloneflags |= unix.CLONE_NEWUTS
	c := startProgram(t, p)
	tree := descendants(c.pid)
	if resp, _ := rawCall(t, &rpc.CriuReq{Type: rpc.CriuReqType_DUMP.Enum(), Opts: c.dumpOpts()}); !resp.GetSuccess() {
		t.Fatalf("dump: %v", resp)
	}
	c.reapDumped(tree)
	o := c.rpcOpts("restore.log")
	o.NotifyScripts = proto.Bool(true)
	resp, notes := rawCall(t, &rpc.CriuReq{Type: rpc.CriuReqType_RESTORE.Enum(), Opts: o})
	if !resp.GetSuccess() {
		t.Fatalf("restore: %v", resp)
	}
	c.pid = int(resp.GetRestore().GetPid())
	if ns, err := readStatusField(c.pid, "NSpid"); err != nil || ns != fmt.Sprintf("%d\t1", c.pid) {
		t.Fatalf("restored pid %d: NSpid %q (%v), want pid 1 of a new namespace", c.pid, ns, err)
	}
	want := []string{"pre-restore", fmt.Sprintf("setup-namespaces %d", c.pid), "post-setup-namespaces",
		fmt.Sprintf("post-restore %d", c.pid), "pre-resume", "post-resume"}
	if !reflect.DeepEqual(notes, want) {
		t.Errorf("restore notifications %q, want %q", notes, want)
	}
	c.mustPass()
}

// newCriu is go-criu's client running amber as criu.
func newCriu(t *testing.T) *criu.Criu {
	t.Helper()
	requireAmber(t)
	c := criu.MakeCriu()
	c.SetCriuPath(testEnv.amber)
	return c
}

// testRPCVersion: Podman and runc refuse a criu below 3.11. CHECK
// answers as `amber check` does (this kernel has what amber needs).
func testRPCVersion(t *testing.T) {
	v, err := newCriu(t).GetCriuVersion()
	if err != nil {
		t.Fatal(err)
	}
	if v < 31100 {
		t.Fatalf("version %d; engines want at least 31100", v)
	}
	resp, _ := rawCall(t, &rpc.CriuReq{Type: rpc.CriuReqType_VERSION.Enum()})
	if !strings.HasPrefix(resp.GetVersion().GetGitid(), "amber-") {
		t.Errorf("VERSION gitid %q does not say amber", resp.GetVersion().GetGitid())
	}
	resp, _ = rawCall(t, &rpc.CriuReq{Type: rpc.CriuReqType_CHECK.Enum()})
	if !resp.GetSuccess() || resp.GetType() != rpc.CriuReqType_CHECK {
		t.Errorf("CHECK: %v", resp)
	}
}

// recorder is go-criu's Notify, recording the calls in order.
type recorder struct {
	calls []string
	fail  string // the call that fails, if any (a prefix of its note)
}

func (r *recorder) note(name string) error {
	r.calls = append(r.calls, name)
	if r.fail != "" && strings.HasPrefix(name, r.fail) {
		return fmt.Errorf("%s fails on purpose", name)
	}
	return nil
}

func (r *recorder) PreDump() error              { return r.note("pre-dump") }
func (r *recorder) PostDump() error             { return r.note("post-dump") }
func (r *recorder) PreRestore() error           { return r.note("pre-restore") }
func (r *recorder) PostRestore(pid int32) error { return r.note(fmt.Sprintf("post-restore %d", pid)) }
func (r *recorder) NetworkLock() error          { return r.note("network-lock") }
func (r *recorder) NetworkUnlock() error        { return r.note("network-unlock") }
func (r *recorder) SetupNamespaces(pid int32) error {
	return r.note(fmt.Sprintf("setup-namespaces %d", pid))
}
func (r *recorder) PostSetupNamespaces() error { return r.note("post-setup-namespaces") }
func (r *recorder) PostResume() error          { return r.note("post-resume") }

// openImages opens the case's images directory for images_dir_fd.
func (c *zcase) openImages() *os.File {
	c.t.Helper()
	f, err := os.Open(c.images)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { f.Close() })
	return f
}

// rpcOpts are the options of a dump or restore of the case, as runc
// sends them: the images directory by descriptor, a log in it.
func (c *zcase) rpcOpts(log string) *rpc.CriuOpts {
	return &rpc.CriuOpts{
		ImagesDirFd: proto.Int32(int32(c.openImages().Fd())),
		LogLevel:    proto.Int32(4),
		LogFile:     proto.String(log),
	}
}

// dumpOpts are rpcOpts for a dump of the program.
func (c *zcase) dumpOpts() *rpc.CriuOpts {
	o := c.rpcOpts("dump.log")
	o.Pid = proto.Int32(int32(c.pid))
	return o
}

// testRPCDumpRestore dumps a program through go-criu, restores it, and
// lets it check itself; the notifications come in CRIU's order.
func testRPCDumpRestore(t *testing.T) {
	c := startCase(t, "counter")
	tree := descendants(c.pid)
	var dumped recorder
	if err := newCriu(t).Dump(c.dumpOpts(), &dumped); err != nil {
		t.Fatalf("dump: %v", err)
	}
	c.reapDumped(tree)
	var restored recorder
	o := c.rpcOpts("restore.log")
	work, err := os.Open(c.dir)
	if err != nil {
		t.Fatal(err)
	}
	defer work.Close()
	o.WorkDirFd = proto.Int32(int32(work.Fd()))
	if err := newCriu(t).Restore(o, &restored); err != nil {
		t.Fatalf("restore: %v", err)
	}
	if _, err := os.Stat(filepath.Join(c.dir, "restore.log")); err != nil {
		t.Errorf("restore.log not in the work directory: %v", err)
	}
	if !alive(c.pid) {
		t.Fatalf("pid %d not running after restore", c.pid)
	}
	want := []string{"pre-dump", "post-dump"}
	if !reflect.DeepEqual(dumped.calls, want) {
		t.Errorf("dump notifications %q, want %q", dumped.calls, want)
	}
	want = []string{"pre-restore", fmt.Sprintf("post-restore %d", c.pid), "post-resume"}
	if !reflect.DeepEqual(restored.calls, want) {
		t.Errorf("restore notifications %q, want %q", restored.calls, want)
	}
	c.mustPass()
}

// testRPCNotifyOrder checks every notification, those go-criu does not
// pass on included, and the restored PID in the response.
func testRPCNotifyOrder(t *testing.T) {
	c := startCase(t, "pause")
	tree := descendants(c.pid)
	o := c.dumpOpts()
	o.NotifyScripts = proto.Bool(true)
	resp, notes := rawCall(t, &rpc.CriuReq{Type: rpc.CriuReqType_DUMP.Enum(), Opts: o})
	if !resp.GetSuccess() || resp.GetType() != rpc.CriuReqType_DUMP {
		t.Fatalf("dump: %v", resp)
	}
	c.reapDumped(tree)
	if want := []string{"pre-dump", "query-ext-files", "post-dump"}; !reflect.DeepEqual(notes, want) {
		t.Errorf("dump notifications %q, want %q", notes, want)
	}
	o = c.rpcOpts("restore.log")
	o.NotifyScripts = proto.Bool(true)
	resp, notes = rawCall(t, &rpc.CriuReq{Type: rpc.CriuReqType_RESTORE.Enum(), Opts: o})
	if !resp.GetSuccess() || int(resp.GetRestore().GetPid()) != c.pid {
		t.Fatalf("restore: %v; want success and pid %d", resp, c.pid)
	}
	want := []string{"pre-restore", fmt.Sprintf("post-restore %d", c.pid), "pre-resume", "post-resume"}
	if !reflect.DeepEqual(notes, want) {
		t.Errorf("restore notifications %q, want %q", notes, want)
	}
	c.mustPass()
}

// testRPCUnknownRequest: a request type amber does not know, one it
// does not implement, and an option of a newer CRIU get error responses,
// not a closed socket.
func testRPCUnknownRequest(t *testing.T) {
	requireAmber(t)
	resp, _ := rawCall(t, &rpc.CriuReq{Type: rpc.CriuReqType(42).Enum()})
	if resp.GetSuccess() || !strings.Contains(resp.GetCrErrmsg(), "unknown request type 42") {
		t.Fatalf("request 42: %v", resp)
	}
	opts, err := (&rpc.CriuOpts{ImagesDirFd: proto.Int32(-1), ImagesDir: proto.String(t.TempDir()), Pid: proto.Int32(int32(os.Getpid()))}).MarshalVT()
	if err != nil {
		t.Fatal(err)
	}
	opts = protowire.AppendVarint(protowire.AppendTag(opts, 128, protowire.VarintType), 1)
	req := protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), uint64(rpc.CriuReqType_DUMP))
	req = protowire.AppendBytes(protowire.AppendTag(req, 2, protowire.BytesType), opts)
	resp, _ = rawCallBytes(t, req)
	if resp.GetSuccess() || !strings.Contains(resp.GetCrErrmsg(), "opts.128: unknown option") {
		t.Fatalf("DUMP with option 128: %v", resp)
	}
	err = newCriu(t).StartPageServer(&rpc.CriuOpts{ImagesDirFd: proto.Int32(-1), ImagesDir: proto.String(t.TempDir())})
	if err == nil || !strings.Contains(err.Error(), "ps: a PAGE_SERVER request needs ps") {
		t.Fatalf("PAGE_SERVER without ps: %v; want an error response naming ps", err)
	}
	resp, _ = rawCall(t, &rpc.CriuReq{Type: rpc.CriuReqType_CPUINFO_DUMP.Enum()})
	if resp.GetSuccess() || !strings.Contains(resp.GetCrErrmsg(), "CPUINFO_DUMP: not supported yet") {
		t.Fatalf("CPUINFO_DUMP: %v; want an error response saying it is not supported", resp)
	}
}

// testRPCRefusedOptions: options amber cannot honour are named in the
// error response, and the program runs on untouched.
func testRPCRefusedOptions(t *testing.T) {
	c := startCase(t, "counter")
	o := c.dumpOpts()
	o.Root = proto.String(c.dir) // accepted: the tree's root, for a mount namespace
	o.CgroupProps = proto.String("x")
	o.LeaveStopped = proto.Bool(true)
	err := newCriu(t).Dump(o, nil)
	if err != nil && strings.Contains(err.Error(), "root:") {
		t.Errorf("dump: %v; root refused", err)
	}
	for _, want := range []string{"leave_stopped: not supported yet", "cgroup_props: not supported yet"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("dump: %v; want an error naming %q", err, want)
		}
	}
	requireRunning(t, c.pid)
	c.mustPass()
}

// testRPCFailedDump: a dump amber refuses half way (an established TCP
// connection without tcp_established) answers with the reason and leaves
// the program running.
func testRPCFailedDump(t *testing.T) {
	c := startCase(t, "tcp_established00")
	err := newCriu(t).Dump(c.dumpOpts(), nil)
	if err == nil || !strings.Contains(err.Error(), "ESTABLISHED") {
		t.Fatalf("dump: %v; want an error response naming the ESTABLISHED connection", err)
	}
	requireRunning(t, c.pid)
	c.mustPass()
}

// testRPCPostDumpFails: a client that fails post-dump (a migration
// called off) gets the program back running, as with CRIU.
func testRPCPostDumpFails(t *testing.T) {
	c := startCase(t, "counter")
	notes := recorder{fail: "post-dump"}
	err := newCriu(t).Dump(c.dumpOpts(), &notes)
	if err == nil || !strings.Contains(err.Error(), "post-dump fails on purpose") {
		t.Fatalf("dump: %v; want the post-dump failure", err)
	}
	requireRunning(t, c.pid)
	c.mustPass()
}

// testRPCPostRestoreFails: a client that fails post-restore gets no
// process: the restored tree is killed before it runs, and a second
// restore of the same images then succeeds.
func testRPCPostRestoreFails(t *testing.T) {
	c := startCase(t, "counter")
	tree := descendants(c.pid)
	if err := newCriu(t).Dump(c.dumpOpts(), nil); err != nil {
		t.Fatalf("dump: %v", err)
	}
	c.reapDumped(tree)
	notes := recorder{fail: "post-restore"}
	err := newCriu(t).Restore(c.rpcOpts("restore.log"), &notes)
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("post-restore %d fails on purpose", c.pid)) {
		t.Fatalf("restore: %v; want the post-restore failure", err)
	}
	if err := reapOrphan(c.pid, exitTimeout); err != nil {
		t.Fatalf("after the failed restore: %v", err)
	}
	if err := newCriu(t).Restore(c.rpcOpts("restore.log"), nil); err != nil {
		t.Fatalf("second restore: %v", err)
	}
	c.mustPass()
}

// rawCall runs one request in a session of its own with `amber swrk`,
// answers every notification with success, and returns the response
// and the notifications' names (with the PID when one came).
func rawCall(t *testing.T, req *rpc.CriuReq) (*rpc.CriuResp, []string) {
	t.Helper()
	b, err := req.MarshalVT()
	if err != nil {
		t.Fatal(err)
	}
	return rawCallBytes(t, b)
}

// rawCallFiles is rawCall with extra as amber's descriptors 4 and up.
func rawCallFiles(t *testing.T, req *rpc.CriuReq, extra ...*os.File) (*rpc.CriuResp, []string) {
	t.Helper()
	b, err := req.MarshalVT()
	if err != nil {
		t.Fatal(err)
	}
	return rawCallBytes(t, b, extra...)
}

// rawCallBytes is rawCall for a request already encoded, extra amber's
// descriptors 4 and up.
func rawCallBytes(t *testing.T, req []byte, extra ...*os.File) (*rpc.CriuResp, []string) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	cln, srv := os.NewFile(uintptr(fds[0]), "client"), os.NewFile(uintptr(fds[1]), "server")
	defer cln.Close()
	cmd := exec.Command(testEnv.amber, "swrk", "3")
	cmd.ExtraFiles = append([]*os.File{srv}, extra...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	defer func() {
		if t.Failed() {
			t.Logf("amber swrk's stderr:\n%s", stderr.String())
		}
	}()
	err = cmd.Start()
	srv.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	var notes []string
	ok, _ := (&rpc.CriuReq{Type: rpc.CriuReqType_NOTIFY.Enum(), NotifySuccess: proto.Bool(true)}).MarshalVT()
	for {
		if _, err := cln.Write(req); err != nil {
			t.Fatalf("send: %v", err)
		}
		resp := rawRecv(t, cln)
		if resp.GetType() != rpc.CriuReqType_NOTIFY {
			return resp, notes
		}
		n := resp.GetNotify()
		note := n.GetScript()
		if n.Pid != nil {
			note += fmt.Sprintf(" %d", n.GetPid())
		}
		notes = append(notes, note)
		req = ok
	}
}

func rawRecv(t *testing.T, f *os.File) *rpc.CriuResp {
	t.Helper()
	b := make([]byte, 1<<16)
	n, err := f.Read(b)
	if err == nil && n == 0 {
		err = errors.New("connection closed")
	}
	if err != nil {
		t.Fatalf("receive: %v", err)
	}
	resp := &rpc.CriuResp{}
	if err := resp.UnmarshalVT(b[:n]); err != nil {
		t.Fatal(err)
	}
	return resp
}
