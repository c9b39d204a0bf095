package swrk

import (
	"strings"
	"testing"

	"github.com/checkpoint-restore/go-criu/v8/rpc"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"amber/internal/kerndat"
)

// client is the other end of a session served in this process.
type client struct {
	t    *testing.T
	fd   int
	done chan error // Serve's result
}

func newClient(t *testing.T) *client {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	c := &client{t: t, fd: fds[0], done: make(chan error, 1)}
	go func() {
		c.done <- Serve(fds[1], "test")
		unix.Close(fds[1])
	}()
	t.Cleanup(func() { unix.Close(c.fd) })
	return c
}

// call sends raw request bytes and reads one response.
func (c *client) call(b []byte) *rpc.CriuResp {
	c.t.Helper()
	if _, err := unix.Write(c.fd, b); err != nil {
		c.t.Fatal(err)
	}
	buf := make([]byte, 1<<16)
	n, err := unix.Read(c.fd, buf)
	if err != nil || n == 0 {
		c.t.Fatalf("no response: %d bytes, %v", n, err)
	}
	resp := &rpc.CriuResp{}
	if err := resp.UnmarshalVT(buf[:n]); err != nil {
		c.t.Fatal(err)
	}
	return resp
}

func (c *client) request(req *rpc.CriuReq) *rpc.CriuResp {
	c.t.Helper()
	b, err := req.MarshalVT()
	if err != nil {
		c.t.Fatal(err)
	}
	return c.call(b)
}

// requireError requires a failed response whose message has every want.
func requireError(t *testing.T, resp *rpc.CriuResp, wantType rpc.CriuReqType, want ...string) {
	t.Helper()
	if resp.GetSuccess() || resp.GetType() != wantType {
		t.Fatalf("got %s success %v; want %s success false", resp.GetType(), resp.GetSuccess(), wantType)
	}
	for _, w := range want {
		if !strings.Contains(resp.GetCrErrmsg(), w) {
			t.Errorf("cr_errmsg %q does not name %q", resp.GetCrErrmsg(), w)
		}
	}
}

// TestVersionKeepOpen: VERSION answers CRIU 4.2 with amber's version in
// gitid, keeps the session open when asked, and FEATURE_CHECK follows.
func TestVersionKeepOpen(t *testing.T) {
	c := newClient(t)
	resp := c.request(&rpc.CriuReq{Type: rpc.CriuReqType_VERSION.Enum(), KeepOpen: proto.Bool(true)})
	v := resp.GetVersion()
	if !resp.GetSuccess() || v.GetMajorNumber()*10000+v.GetMinorNumber()*100 < 31100 || v.GetGitid() != "amber-test" {
		t.Fatalf("VERSION: %v", resp)
	}
	resp = c.request(&rpc.CriuReq{Type: rpc.CriuReqType_FEATURE_CHECK.Enum(),
		Features: &rpc.CriuFeatures{LazyPages: proto.Bool(true), MemTrack: proto.Bool(true)}})
	f := resp.GetFeatures()
	// Lazy pages as the kernel allows them (CRIU's test); memory
	// tracking as amber does it (userfaultfd write protection), whatever
	// soft-dirty is.
	lazy := kerndat.Probe().CheckFeature("uffd-noncoop") == nil
	track := kerndat.Probe().CheckFeature("mem_dirty_track") == nil
	if !resp.GetSuccess() || f.LazyPages == nil || f.GetLazyPages() != lazy || f.MemTrack == nil || f.GetMemTrack() != track || f.GetPidfdStore() {
		t.Fatalf("FEATURE_CHECK: %v (userfaultfd with its events here: %v, memory tracking: %v)", resp, lazy, track)
	}
	if err := <-c.done; err != nil {
		t.Fatalf("session: %v", err)
	}
}

// TestUnknownRequest: a request type amber does not know, and one it
// does not implement, get error responses, not a closed socket.
func TestUnknownRequest(t *testing.T) {
	c := newClient(t)
	requireError(t, c.request(&rpc.CriuReq{Type: rpc.CriuReqType(99).Enum()}), rpc.CriuReqType_EMPTY, "unknown request type 99")
	if err := <-c.done; err == nil {
		t.Fatal("session of a bad request ended without error")
	}
	c = newClient(t)
	requireError(t, c.request(&rpc.CriuReq{Type: rpc.CriuReqType_CPUINFO_DUMP.Enum()}), rpc.CriuReqType_CPUINFO_DUMP, "CPUINFO_DUMP: not supported yet")
	c = newClient(t)
	requireError(t, c.request(&rpc.CriuReq{Type: rpc.CriuReqType_DUMP.Enum(), KeepOpen: proto.Bool(true)}), rpc.CriuReqType_DUMP, "keep_open")
}

// TestUndecodable: a request that does not decode (here: without the
// required images_dir_fd) gets an error response too.
func TestUndecodable(t *testing.T) {
	c := newClient(t)
	opts := protowire.AppendVarint(protowire.AppendTag(nil, 2, protowire.VarintType), 1) // pid only
	req := protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), uint64(rpc.CriuReqType_DUMP))
	req = protowire.AppendBytes(protowire.AppendTag(req, 2, protowire.BytesType), opts)
	requireError(t, c.call(req), rpc.CriuReqType_EMPTY, "decode request", "images_dir_fd")
}

// TestUnknownOption: a DUMP with an option field amber does not know is
// refused with CRIU's errno for bad requests, before anything is dumped.
func TestUnknownOption(t *testing.T) {
	c := newClient(t)
	opts, _ := (&rpc.CriuOpts{ImagesDirFd: proto.Int32(0), Pid: proto.Int32(1)}).MarshalVT()
	opts = protowire.AppendVarint(protowire.AppendTag(opts, 128, protowire.VarintType), 1)
	req := protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), uint64(rpc.CriuReqType_DUMP))
	req = protowire.AppendBytes(protowire.AppendTag(req, 2, protowire.BytesType), opts)
	resp := c.call(req)
	requireError(t, resp, rpc.CriuReqType_DUMP, "opts.128", "unknown option")
	if resp.GetCrErrno() != int32(unix.EBADRQC) {
		t.Errorf("cr_errno %d, want EBADRQC", resp.GetCrErrno())
	}
}

// TestNotifyWithFd: orphan-pts-master carries the descriptor as
// SCM_RIGHTS on the NOTIFY message, as runc reads it, and waits for the
// client's answer.
func TestNotifyWithFd(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	done := make(chan error, 1)
	go func() { done <- (&conn{fd: fds[1]}).notifyFd("orphan-pts-master", 0, p[1]) }()
	buf, oob := make([]byte, 4096), make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := unix.Recvmsg(fds[0], buf, oob, unix.MSG_CMSG_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	resp := &rpc.CriuResp{}
	if err := resp.UnmarshalVT(buf[:n]); err != nil {
		t.Fatal(err)
	}
	if resp.GetType() != rpc.CriuReqType_NOTIFY || resp.GetNotify().GetScript() != "orphan-pts-master" {
		t.Fatalf("got %v, want the orphan-pts-master notification", resp)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		t.Fatalf("%d control messages (%v), want one", len(msgs), err)
	}
	got, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(got) != 1 {
		t.Fatalf("descriptors %v (%v), want one", got, err)
	}
	defer unix.Close(got[0])
	if _, err := unix.Write(got[0], []byte("x")); err != nil {
		t.Fatal(err)
	}
	if n, err := unix.Read(p[0], make([]byte, 1)); err != nil || n != 1 {
		t.Fatalf("the descriptor received is not the pipe end sent: read %d, %v", n, err)
	}
	ans, err := (&rpc.CriuReq{Type: rpc.CriuReqType_NOTIFY.Enum(), NotifySuccess: proto.Bool(true)}).MarshalVT()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := unix.Write(fds[0], ans); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
