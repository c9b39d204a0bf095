package test

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/checkpoint-restore/go-criu/v8/rpc"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
)

// TestInheritFd dumps inherit_fd, whose fd 3 is a pipe the driver reads,
// and restores it with --inherit-fd fd[3]:pipe:[INO], amber's fd 3 the
// write end of a new pipe: the program writes through it after restore
// and the driver reads exactly that from the new pipe. In the host's pid
// namespace, and as the init of a pid namespace of its own, where amber's
// PID names nothing (a container's case).
func TestInheritFd(t *testing.T) {
	t.Run("host", func(t *testing.T) { testInheritFd(t, 0) })
	t.Run("pid_namespace", func(t *testing.T) { testInheritFd(t, unix.CLONE_NEWPID) })
}

func testInheritFd(t *testing.T, cloneflags uintptr) {
	p, _ := lookupProgram("inherit_fd")
	p.cloneflags = cloneflags
	c, key := startInheritFd(t, p)
	tree := descendants(c.pid)
	if r := c.dump(); r.err != nil {
		t.Fatalf("dump failed: %v", r)
	}
	c.reapDumped(tree)

	// Refused before anything is made: a descriptor amber does not have.
	r := c.restoreInherit(c.pidfile(), nil, "--inherit-fd", "fd[9]:"+key)
	requireFailure(t, r, "--inherit-fd fd[9]:"+key+": fd 9 is not open")
	c.requireLive()

	// A key naming no file of the images is ignored, as CRIU does, with
	// a warning.
	rd, wr := mustPipe(t)
	pidfile := c.pidfile()
	if r := c.restoreInherit(pidfile, wr, "--inherit-fd", "fd[3]:"+key, "--inherit-fd", "fd[3]:pipe:[1]"); r.err != nil {
		t.Fatalf("restore failed: %v", r)
	}
	wr.Close()
	if log, _ := os.ReadFile(filepath.Join(c.images, "restore.log")); !strings.Contains(string(log), "--inherit-fd pipe:[1]: no file of the images has this key: ignored") {
		t.Errorf("restore.log does not warn of the unused key pipe:[1]:\n%s", log)
	}
	if cloneflags&unix.CLONE_NEWPID != 0 {
		c.requireNewPidNamespace(pidfile)
	} else {
		c.checkRestoredPid(pidfile)
	}
	c.mustPass()
	requirePipeGot(t, rd, "after 500500\n")
}

// startInheritFd starts p with fd 3 the write end of a pipe of the
// driver's, and returns it and the --inherit-fd key of that pipe.
func startInheritFd(t *testing.T, p program) (*zcase, string) {
	t.Helper()
	rd, wr := mustPipe(t)
	c := startProgram(t, p, wr)
	wr.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(rd.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	return c, fmt.Sprintf("pipe:[%d]", st.Ino)
}

// restoreInherit runs amber restore -d with extra arguments, wr (if
// any) as amber's fd 3.
func (c *zcase) restoreInherit(pidfile string, wr *os.File, extra ...string) amberResult {
	ctx, cancel := context.WithTimeout(context.Background(), amberTimeout)
	defer cancel()
	args := c.restoreArgs(pidfile, append([]string{"-d"}, extra...)...)
	cmd, stdout, stderr, err := amberCommand(ctx, testEnv.amber, c.dir, c.prog, args...)
	if err != nil {
		c.t.Fatal(err)
	}
	defer stdout.Close()
	defer stderr.Close()
	if wr != nil {
		cmd.ExtraFiles = []*os.File{wr}
	}
	err = cmd.Run()
	r := amberResult{args: args, stdout: readAll(stdout), stderr: readAll(stderr), err: err}
	c.results = append(c.results, r)
	return r
}

// mustPipe makes a pipe whose ends the test closes at its end.
func mustPipe(t *testing.T) (*os.File, *os.File) {
	t.Helper()
	rd, wr, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rd.Close(); wr.Close() })
	return rd, wr
}

// requirePipeGot reads rd to its end (every writer gone) and requires
// exactly want.
func requirePipeGot(t *testing.T, rd *os.File, want string) {
	t.Helper()
	rd.SetReadDeadline(time.Now().Add(exitTimeout))
	got, err := io.ReadAll(rd)
	if err != nil || string(got) != want {
		t.Fatalf("the driver's new pipe holds %q (%v), want %q", got, err, want)
	}
}

// testRPCInheritFd: RPC inherit_fd names amber's own descriptors, which
// the client opened for it (as runc passes a container's stdio to criu
// swrk): the restored program writes through the client's new pipe.
func testRPCInheritFd(t *testing.T) {
	p, _ := lookupProgram("inherit_fd")
	c, key := startInheritFd(t, p)
	tree := descendants(c.pid)
	if resp, _ := rawCall(t, &rpc.CriuReq{Type: rpc.CriuReqType_DUMP.Enum(), Opts: c.dumpOpts()}); !resp.GetSuccess() {
		t.Fatalf("dump: %v", resp)
	}
	c.reapDumped(tree)
	rd, wr := mustPipe(t)
	o := c.rpcOpts("restore.log")
	o.InheritFd = []*rpc.InheritFd{{Key: proto.String(key), Fd: proto.Int32(4)}} // after the socket, 3
	resp, _ := rawCallFiles(t, &rpc.CriuReq{Type: rpc.CriuReqType_RESTORE.Enum(), Opts: o}, wr)
	wr.Close()
	if !resp.GetSuccess() {
		t.Fatalf("restore: %v", resp)
	}
	if pid := int(resp.GetRestore().GetPid()); pid != c.pid {
		t.Fatalf("restored as pid %d, dumped as %d", pid, c.pid)
	}
	c.mustPass()
	requirePipeGot(t, rd, "after 500500\n")
}
