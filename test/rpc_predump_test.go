package test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/checkpoint-restore/go-criu/v8/rpc"
	"google.golang.org/protobuf/proto"
)

// TestRPCPreDump drives pre-dumps through the RPC as go-criu's client
// and CRIU's service chain them: one session of `amber swrk` takes two
// PRE_DUMPs of predump_writer, which runs on after each, then the DUMP
// on top of them (parent_img, track_mem), as CRIU's pre-dump loop does.
// The dump leaves the pages unwritten since to the pre-dumps, and the
// restore of the chain gives the program back every page (its own
// check). A pre-dump writes stats-dump and runs no action scripts, as CRIU's: the session's
// notify_scripts brings notifications for the dump only.
func TestRPCPreDump(t *testing.T) {
	c := startCase(t, "predump_writer")
	tree := descendants(c.pid)
	cr := newCriu(t)
	if err := cr.Prepare(); err != nil {
		t.Fatal(err)
	}
	defer cr.Cleanup()
	var notes recorder
	for i, dir := range []string{"pre1", "pre2"} {
		o := c.dirOpts(dir)
		if i > 0 {
			o.ParentImg = proto.String("../pre1")
		}
		if err := cr.PreDump(o, &notes); err != nil {
			t.Fatalf("pre-dump %s: %v\n%s", dir, err, c.logOf(dir))
		}
		if !alive(c.pid) {
			t.Fatalf("pid %d gone after pre-dump %s", c.pid, dir)
		}
	}
	if len(notes.calls) > 0 {
		t.Errorf("pre-dump notifications %q, want none", notes.calls)
	}
	o := c.dirOpts("images")
	o.ParentImg, o.TrackMem = proto.String("../pre2"), proto.Bool(true)
	if err := cr.Dump(o, &notes); err != nil {
		t.Fatalf("dump: %v\n%s", err, c.logOf("images"))
	}
	if err := cr.Cleanup(); err != nil {
		t.Fatalf("the session of the pre-dumps and the dump: %v", err)
	}
	c.reapDumped(tree)
	// As CRIU's, a pre-dump writes stats-dump (Podman exports it).
	if d := readDumpStats(t, filepath.Join(c.dir, "pre2")); d.GetPagesWritten() == 0 || d.GetPagesSkippedParent() == 0 {
		t.Errorf("pre2's stats-dump: %+v; want pages written and pages left to pre1", d)
	}
	c.requireIncremental("pre2")
	c.requireIncremental("images")
	if r := c.restoreDetached(c.pidfile()); r.err != nil {
		t.Fatalf("restore: %v", r)
	}
	c.requireNoUffd()
	c.mustPass()
}

// TestRPCPreDumpThenRestore: after a PRE_DUMP, CRIU's service takes only
// another PRE_DUMP or the DUMP; a RESTORE there is refused, naming why,
// and the pre-dumped program runs on.
func TestRPCPreDumpThenRestore(t *testing.T) {
	c := startCase(t, "predump_writer")
	cr := newCriu(t)
	if err := cr.Prepare(); err != nil {
		t.Fatal(err)
	}
	defer cr.Cleanup()
	if err := cr.PreDump(c.dirOpts("pre1"), nil); err != nil {
		t.Fatalf("pre-dump: %v\n%s", err, c.logOf("pre1"))
	}
	err := cr.Restore(c.rpcOpts("restore.log"), nil)
	if err == nil || !strings.Contains(err.Error(), "after a PRE_DUMP") {
		t.Fatalf("RESTORE after a PRE_DUMP: %v; want it refused", err)
	}
	if !alive(c.pid) {
		t.Fatalf("pid %d gone", c.pid)
	}
	c.requireParkedUffd()
}

// dirOpts are the options of a pre-dump or dump of the case into its
// directory dir, as runc sends them.
func (c *zcase) dirOpts(dir string) *rpc.CriuOpts {
	c.t.Helper()
	path := filepath.Join(c.dir, dir)
	if err := os.MkdirAll(path, 0o755); err != nil {
		c.t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { f.Close() })
	return &rpc.CriuOpts{ImagesDirFd: proto.Int32(int32(f.Fd())), LogLevel: proto.Int32(4), LogFile: proto.String("dump.log"),
		Pid: proto.Int32(int32(c.pid)), NotifyScripts: proto.Bool(true)}
}

// logOf is the dump log in the case's directory dir.
func (c *zcase) logOf(dir string) string {
	b, _ := os.ReadFile(filepath.Join(c.dir, dir, "dump.log"))
	return string(b)
}

// TestRPCPreDumpPageServer: a PRE_DUMP and the DUMP on top of it with
// ps send their pages to amber page-server (runc's --page-server), the
// dump's other images staying in its own directory, where the server
// writes too, as a migration merges them; the restore of the chain
// passes the program's check.
func TestRPCPreDumpPageServer(t *testing.T) {
	c := startCase(t, "predump_writer")
	tree := descendants(c.pid)
	ps := func(s *pageServer) *rpc.CriuPageServerInfo {
		return &rpc.CriuPageServerInfo{Address: proto.String("127.0.0.1"), Port: proto.Int32(int32(s.port))}
	}
	s := c.startPageServer(testEnv.amber, "pre1")
	o := c.dirOpts("pre1")
	o.Ps = ps(s)
	if err := newCriu(t).PreDump(o, &recorder{}); err != nil {
		t.Fatalf("pre-dump: %v\n%s", err, c.logOf("pre1"))
	}
	s.mustExit()
	s = c.startPageServer(testEnv.amber, "images", "--prev-images-dir", "../pre1")
	o = c.dirOpts("images")
	o.Ps, o.ParentImg, o.TrackMem = ps(s), proto.String("../pre1"), proto.Bool(true)
	if err := newCriu(t).Dump(o, &recorder{}); err != nil {
		t.Fatalf("dump: %v\n%s", err, c.logOf("images"))
	}
	s.mustExit()
	c.reapDumped(tree)
	c.requireIncremental("images")
	if r := c.restoreDetached(c.pidfile()); r.err != nil {
		t.Fatalf("restore: %v", r)
	}
	c.mustPass()
}

// TestRPCPageServer: page servers started through the RPC, as go-criu's
// phaul starts them on a migration's destination (PAGE_SERVER_CHLD,
// PAGE_SERVER): each answers its PID and port once it listens, takes
// one dump, writes the request's log, and exits; a PRE_DUMP and the
// DUMP on top of it send their pages there (the second server linked to
// the first one's images by parent_img), and the restore of the chain
// passes the program's check.
func TestRPCPageServer(t *testing.T) {
	c := startCase(t, "predump_writer")
	tree := descendants(c.pid)
	dump := func(kind rpc.CriuReqType, dir, parent string) {
		t.Helper()
		port := freePort(t)
		ps := &rpc.CriuPageServerInfo{Address: proto.String("127.0.0.1"), Port: proto.Int32(int32(port))}
		so := c.dirOpts(dir)
		so.Pid, so.NotifyScripts, so.LogFile, so.Ps = nil, nil, proto.String("page-server.log"), ps
		if parent != "" {
			so.ParentImg = proto.String(parent)
		}
		resp, _ := rawCall(t, &rpc.CriuReq{Type: kind.Enum(), Opts: so})
		if !resp.GetSuccess() || resp.GetType() != rpc.CriuReqType_PAGE_SERVER || resp.GetPs().GetPort() != int32(port) || resp.GetPs().GetPid() <= 0 {
			t.Fatalf("%s: %v", kind, resp)
		}
		server := int(resp.GetPs().GetPid())
		o := c.dirOpts(dir)
		o.Ps = ps
		if parent != "" {
			o.ParentImg, o.TrackMem = proto.String(parent), proto.Bool(true)
		}
		var err error
		if parent == "" {
			err = newCriu(t).PreDump(o, &recorder{})
		} else {
			err = newCriu(t).Dump(o, &recorder{})
		}
		if err != nil {
			t.Fatalf("%s to the page server: %v\n%s", dir, err, c.logOf(dir))
		}
		ws, err := waitPid(server, exitTimeout)
		if err != nil || ws.ExitStatus() != 0 {
			b, _ := os.ReadFile(filepath.Join(c.dir, dir, "page-server.log"))
			t.Fatalf("page server %d: %v, %v\n%s", server, ws, err, b)
		}
	}
	dump(rpc.CriuReqType_PAGE_SERVER_CHLD, "pre1", "")
	dump(rpc.CriuReqType_PAGE_SERVER, "images", "../pre1")
	c.reapDumped(tree)
	c.requireIncremental("images")
	if b, err := os.ReadFile(filepath.Join(c.images, "page-server.log")); err != nil || !strings.Contains(string(b), "pages written") {
		t.Errorf("the page server's log: %v\n%s", err, b)
	}
	if r := c.restoreDetached(c.pidfile()); r.err != nil {
		t.Fatalf("restore: %v", r)
	}
	c.mustPass()
}
