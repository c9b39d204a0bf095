package test

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	criu "github.com/checkpoint-restore/go-criu/v8"
	"github.com/checkpoint-restore/go-criu/v8/phaul"
	"github.com/checkpoint-restore/go-criu/v8/rpc"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
)

// TestPhaul migrates predump_writer with go-criu's phaul, the live
// migration that drives CRIU through its RPC, with amber as criu: the
// destination's page servers (PAGE_SERVER_CHLD) and the source's
// pre-dumps and dump share one connection (ps.fd, a socket pair), the
// source's pre-dumps run in one session, and the restore, of the chain
// the page servers wrote with the dump's other images, runs while the
// source waits frozen, as phaul's own test does it. The program, in a
// pid namespace of its own, then checks every page.
func TestPhaul(t *testing.T) {
	c := startNamespaced(t, "predump_writer", unix.CLONE_NEWPID)
	tree := descendants(c.pid)
	bin := filepath.Join(t.TempDir(), "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(testEnv.amber, filepath.Join(bin, "criu")); err != nil {
		t.Fatal(err)
	}
	// phaul runs the criu on PATH.
	t.Setenv("PATH", bin+":"+os.Getenv("PATH"))
	// Not close-on-exec: each criu swrk inherits them, as phaul wants.
	fds, err := syscall.Socketpair(syscall.AF_LOCAL, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fds[0])
	defer syscall.Close(fds[1])
	dirs := map[string]string{}
	for _, name := range []string{"local", "remote", "final"} {
		dirs[name] = filepath.Join(c.dir, name)
		if err := os.Mkdir(dirs[name], 0o700); err != nil {
			t.Fatal(err)
		}
	}
	srv, err := phaul.MakePhaulServer(phaul.Config{Pid: int32(c.pid), Memfd: fds[1], Wdir: dirs["remote"]})
	if err != nil {
		t.Fatal(err)
	}
	l := &phaulLocal{t: t, srv: srv, final: dirs["final"]}
	cln, err := phaul.MakePhaulClient(l, srv, phaul.Config{Pid: int32(c.pid), Memfd: fds[0], Wdir: dirs["local"]})
	if err != nil {
		t.Fatal(err)
	}
	if err := cln.Migrate(); err != nil {
		t.Fatalf("phaul: %v\n%s", err, phaulLogs(dirs))
	}
	if l.restored == 0 {
		t.Fatal("phaul ended without the restore")
	}
	c.reapDumped(tree)
	c.pid = l.restored
	c.mustPass()
}

// phaulLocal is the source's part phaul leaves to its user: the final
// dump, whose post-dump notification merges its images into the
// destination's last and restores them there, as phaul's own test does.
type phaulLocal struct {
	criu.NoNotify
	t        *testing.T
	srv      *phaul.Server
	final    string
	restored int
}

// DumpCopyRestore dumps the tree on top of the last pre-dump, its pages
// to the page server on the shared connection.
func (l *phaulLocal) DumpCopyRestore(cr *criu.Criu, cfg phaul.Config, last string) error {
	dir, err := os.Open(l.final)
	if err != nil {
		return err
	}
	defer dir.Close()
	return cr.Dump(&rpc.CriuOpts{Pid: proto.Int32(cfg.Pid), LogLevel: proto.Int32(4), LogFile: proto.String("dump.log"),
		ImagesDirFd: proto.Int32(int32(dir.Fd())), TrackMem: proto.Bool(true), ParentImg: proto.String(last),
		Ps: &rpc.CriuPageServerInfo{Fd: proto.Int32(int32(cfg.Memfd))}}, l)
}

// PostDump links the dump's images into the destination's last images
// and restores them there, while the source waits frozen.
func (l *phaulLocal) PostDump() error {
	dest := l.srv.LastImagesDir()
	names, err := os.ReadDir(l.final)
	if err != nil {
		return err
	}
	for _, n := range names {
		if strings.HasSuffix(n.Name(), ".img") {
			if err := os.Link(filepath.Join(l.final, n.Name()), filepath.Join(dest, n.Name())); err != nil {
				return err
			}
		}
	}
	dir, err := os.Open(dest)
	if err != nil {
		return err
	}
	defer dir.Close()
	var r restoredPid
	err = l.srv.GetCriu().Restore(&rpc.CriuOpts{LogLevel: proto.Int32(4), LogFile: proto.String("restore.log"),
		ImagesDirFd: proto.Int32(int32(dir.Fd()))}, &r)
	l.restored = int(r)
	return err
}

// restoredPid is a Notify that keeps the restored root's PID.
type restoredPid int32

func (*restoredPid) PreDump() error                  { return nil }
func (*restoredPid) PostDump() error                 { return nil }
func (*restoredPid) PreRestore() error               { return nil }
func (r *restoredPid) PostRestore(pid int32) error   { *r = restoredPid(pid); return nil }
func (*restoredPid) NetworkLock() error              { return nil }
func (*restoredPid) NetworkUnlock() error            { return nil }
func (*restoredPid) SetupNamespaces(pid int32) error { return nil }
func (*restoredPid) PostSetupNamespaces() error      { return nil }
func (*restoredPid) PostResume() error               { return nil }

// phaulLogs are amber's logs of a phaul migration, for a failure.
func phaulLogs(dirs map[string]string) string {
	var b strings.Builder
	for _, d := range dirs {
		paths, _ := filepath.Glob(filepath.Join(d, "*", "*.log"))
		more, _ := filepath.Glob(filepath.Join(d, "*.log"))
		for _, p := range append(paths, more...) {
			data, _ := os.ReadFile(p)
			b.WriteString("=== " + p + ":\n" + string(data) + "\n")
		}
	}
	return b.String()
}
