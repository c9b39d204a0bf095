package test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/checkpoint-restore/go-criu/v8/rpc"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
)

// postDumpSignal is a go-criu notifier that says when the dump's images
// are written (post-dump).
type postDumpSignal struct {
	recorder
	written chan struct{}
}

func (p *postDumpSignal) PostDump() error {
	close(p.written)
	return p.recorder.PostDump()
}

// TestRPCLazyPages dumps lazy_mem (in a pid namespace of its own, so that
// the frozen source and its copy live side by side) through the RPC with
// lazy_pages and ps, as CRIU's service takes them: the dump leaves its
// memory out of the images and serves it on ps's port until amber
// lazy-pages had every page, and only then answers. A restore through
// the RPC with lazy_pages leaves the memory to that daemon; the restored
// program reads all of it at once and passes, and the source is killed.
func TestRPCLazyPages(t *testing.T) {
	t.Setenv("LAZY_MIB", lazyMiB)
	c := startNamespaced(t, "lazy_mem", unix.CLONE_NEWPID)
	src, tree := c.pid, descendants(c.pid)
	port := freePort(t)
	o := c.dumpOpts()
	o.LazyPages = proto.Bool(true)
	o.Ps = &rpc.CriuPageServerInfo{Address: proto.String("127.0.0.1"), Port: proto.Int32(int32(port))}
	notes := &postDumpSignal{written: make(chan struct{})}
	dumped := make(chan error, 1)
	go func() { dumped <- newCriu(t).Dump(o, notes) }()
	select {
	case <-notes.written:
	case err := <-dumped:
		t.Fatalf("the lazy dump ended before its images were written: %v", err)
	}
	(&remoteLazy{c: c}).requireLazyImages(lazyMiBBytes(t))
	d := c.startLazyDaemon("--page-server", "--address", "127.0.0.1", "--port", strconv.Itoa(port))
	if err := os.WriteFile(filepath.Join(c.dir, "go.now"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	ro := c.rpcOpts("restore.log")
	ro.LazyPages = proto.Bool(true)
	resp, _ := rawCall(t, &rpc.CriuReq{Type: rpc.CriuReqType_RESTORE.Enum(), Opts: ro})
	if !resp.GetSuccess() {
		t.Fatalf("lazy restore: %v", resp)
	}
	d.mustExit()
	if err := <-dumped; err != nil {
		t.Fatalf("lazy dump: %v", err)
	}
	c.reapDumped(tree)
	c.pid = int(resp.GetRestore().GetPid())
	if c.pid == src {
		t.Fatalf("restored as pid %d, the source's own", c.pid)
	}
	c.mustPass()
}

// TestRPCLazyPagesWithoutPs: a lazy dump through the RPC needs ps, the
// port it serves its pages on; without it the request is refused naming
// both, and the program runs on.
func TestRPCLazyPagesWithoutPs(t *testing.T) {
	c := startCase(t, "counter")
	o := c.dumpOpts()
	o.LazyPages = proto.Bool(true)
	err := newCriu(t).Dump(o, nil)
	if err == nil || !strings.Contains(err.Error(), "lazy_pages: a lazy dump serves its pages on ps") {
		t.Fatalf("dump: %v; want a refusal naming lazy_pages and ps", err)
	}
	requireRunning(t, c.pid)
	c.mustPass()
}
