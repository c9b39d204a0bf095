package sockets

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"amber/internal/image/imagetest"

	skopts "github.com/checkpoint-restore/go-criu/v8/crit/images/sk-opts"
	"golang.org/x/sys/unix"
)

// pair makes a socketpair of typ in this process.
func pair(t *testing.T, typ int) [2]int {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, typ, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fds[0]); unix.Close(fds[1]) })
	return fds
}

func inoOf(t *testing.T, fd int) uint32 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.Fatal(err)
	}
	return uint32(st.Ino)
}

// TestPeekQueue peeks the queues of socketpairs: whole datagrams (an
// empty one and one larger than the first buffer included), a stream's
// bytes, and leaves them and the peek offset as they were.
func TestPeekQueue(t *testing.T) {
	big := strings.Repeat("b", 100000)
	for _, typ := range []int{unix.SOCK_DGRAM, unix.SOCK_SEQPACKET, unix.SOCK_STREAM} {
		t.Run(sockType(uint32(typ)), func(t *testing.T) {
			p := pair(t, typ)
			unix.SetsockoptInt(p[1], unix.SOL_SOCKET, unix.SO_SNDBUF, 1<<20)
			msgs := []string{"one", big, "three"}
			if typ == unix.SOCK_DGRAM {
				msgs = append(msgs, "")
			}
			for _, m := range msgs {
				if _, err := unix.Write(p[1], []byte(m)); err != nil {
					t.Fatal(err)
				}
			}
			if err := unix.SetsockoptInt(p[0], unix.SOL_SOCKET, unix.SO_PEEK_OFF, 5); err != nil {
				t.Fatal(err)
			}
			peek, err := peekQueue(p[0], typ, false)
			got := dataOf(peek)
			if err != nil {
				t.Fatal(err)
			}
			if typ == unix.SOCK_STREAM {
				if s := string(joinAll(got)); s != strings.Join(msgs, "") {
					t.Errorf("stream: peeked %d bytes, want %d", len(s), len(strings.Join(msgs, "")))
				}
			} else if fmt.Sprint(lens(got)) != fmt.Sprint(lensOf(msgs)) {
				t.Errorf("peeked messages of %v bytes, want %v", lens(got), lensOf(msgs))
			}
			if off, _ := unix.GetsockoptInt(p[0], unix.SOL_SOCKET, unix.SO_PEEK_OFF); off != 5 {
				t.Errorf("SO_PEEK_OFF %d after the dump, want 5 back", off)
			}
			unix.SetsockoptInt(p[0], unix.SOL_SOCKET, unix.SO_PEEK_OFF, -1)
			buf := make([]byte, 200000)
			if n, _ := unix.Read(p[0], buf); string(buf[:n]) != "one" && typ != unix.SOCK_STREAM {
				t.Errorf("the queue lost its first message: %q", buf[:n])
			}
		})
	}
}

// TestPeekQueueShutdown peeks the queues of sockets shut down for
// reading: what was queued, then the end (where every read is empty), and
// an empty seqpacket message with more behind it is refused, not a loop.
func TestPeekQueueShutdown(t *testing.T) {
	for _, typ := range []int{unix.SOCK_DGRAM, unix.SOCK_SEQPACKET, unix.SOCK_STREAM} {
		t.Run(sockType(uint32(typ)), func(t *testing.T) {
			p := pair(t, typ)
			for _, m := range []string{"one", "two"} {
				if _, err := unix.Write(p[1], []byte(m)); err != nil {
					t.Fatal(err)
				}
			}
			if err := unix.Shutdown(p[0], unix.SHUT_RD); err != nil {
				t.Fatal(err)
			}
			peek, err := peekQueue(p[0], typ, true)
			got := dataOf(peek)
			if err != nil || string(joinAll(got)) != "onetwo" {
				t.Errorf("peeked %q, %v; want \"one\", \"two\"", got, err)
			}
		})
	}
	p := pair(t, unix.SOCK_SEQPACKET)
	for _, m := range []string{"one", "", "three"} {
		if _, err := unix.Write(p[1], []byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	if err := unix.Shutdown(p[0], unix.SHUT_RD); err != nil {
		t.Fatal(err)
	}
	if peek, err := peekQueue(p[0], unix.SOCK_SEQPACKET, true); !errors.Is(err, errEmptyMessage) {
		t.Errorf("an empty message before the end: peeked %q, %v; want errEmptyMessage", dataOf(peek), err)
	}
}

func dataOf(msgs []peeked) [][]byte {
	var out [][]byte
	for _, m := range msgs {
		out = append(out, m.data)
	}
	return out
}

func joinAll(b [][]byte) []byte {
	var out []byte
	for _, x := range b {
		out = append(out, x...)
	}
	return out
}

func lens(b [][]byte) []int {
	var out []int
	for _, x := range b {
		out = append(out, len(x))
	}
	return out
}

func lensOf(s []string) []int {
	var out []int
	for _, x := range s {
		out = append(out, len(x))
	}
	return out
}

// TestPeekQueueRights: peeking returns amber's copies of the descriptors
// in flight, message by message, and leaves them in the queue; on an
// error, the copies made are closed.
func TestPeekQueueRights(t *testing.T) {
	p := pair(t, unix.SOCK_DGRAM)
	f, err := os.Open("/dev/null")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, rights := range [][]int{{int(f.Fd())}, nil, {int(f.Fd()), p[1]}} {
		var oob []byte
		if rights != nil {
			oob = unix.UnixRights(rights...)
		}
		if err := unix.Sendmsg(p[1], []byte("x"), oob, nil, 0); err != nil {
			t.Fatal(err)
		}
	}
	msgs, err := peekQueue(p[0], unix.SOCK_DGRAM, false)
	if err != nil {
		t.Fatal(err)
	}
	defer closePeeked(msgs)
	if len(msgs) != 3 || len(msgs[0].fds) != 1 || len(msgs[1].fds) != 0 || len(msgs[2].fds) != 2 {
		t.Fatalf("peeked %+v: want 3 messages with 1, 0 and 2 descriptors", msgs)
	}
	if inoOf(t, msgs[2].fds[1]) != inoOf(t, p[1]) {
		t.Errorf("the second descriptor of message 2 is not the socket sent")
	}
	if n, _, _, _, err := unix.Recvmsg(p[0], make([]byte, 8), make([]byte, 64), unix.MSG_DONTWAIT|unix.MSG_PEEK); n != 1 || err != nil {
		t.Errorf("the queue lost its messages: %d, %v", n, err)
	}
	// A seqpacket queue amber cannot peek to its end: the copies of the
	// descriptors peeked before the error are closed.
	sp := pair(t, unix.SOCK_SEQPACKET)
	if err := unix.Sendmsg(sp[1], []byte("one"), unix.UnixRights(int(f.Fd())), nil, 0); err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"", "three"} {
		if _, err := unix.Write(sp[1], []byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	unix.Shutdown(sp[0], unix.SHUT_RD)
	before := openFds(t)
	if _, err := peekQueue(sp[0], unix.SOCK_SEQPACKET, true); !errors.Is(err, errEmptyMessage) {
		t.Errorf("peekQueue: %v, want errEmptyMessage", err)
	}
	if after := openFds(t); after != before {
		t.Errorf("%d descriptors open after a failed peek, %d before", after, before)
	}
}

func openFds(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// TestListUnixSockets finds a socketpair and a bound, listening socket
// with a connection waiting, through sock_diag.
func TestListUnixSockets(t *testing.T) {
	p := pair(t, unix.SOCK_STREAM)
	unix.Shutdown(p[0], unix.SHUT_WR)
	l, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(l)
	name := fmt.Sprintf("\x00amber-test-%d", os.Getpid())
	if err := unix.Bind(l, &unix.SockaddrUnix{Name: name}); err != nil {
		t.Fatal(err)
	}
	unix.Listen(l, 3)
	c, _ := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	defer unix.Close(c)
	if err := unix.Connect(c, &unix.SockaddrUnix{Name: name}); err != nil {
		t.Fatal(err)
	}
	all, err := listUnixSockets(nil)
	if err != nil {
		t.Fatal(err)
	}
	a, b, ls := all[inoOf(t, p[0])], all[inoOf(t, p[1])], all[inoOf(t, l)]
	switch {
	case a == nil || b == nil || ls == nil:
		t.Fatalf("sockets not found: %v %v %v", a, b, ls)
	case a.peer != b.ino || b.peer != a.ino || a.typ != unix.SOCK_STREAM || a.state != tcpEstablished:
		t.Errorf("pair: %+v %+v", a, b)
	case a.shutdown != 2 || b.shutdown != 1:
		t.Errorf("shutdown %d and %d, want SEND and RCV", a.shutdown, b.shutdown)
	case ls.state != tcpListen || string(ls.name) != name || ls.wqlen != 3:
		t.Errorf("listener %+v", ls)
	case len(ls.icons) != 1 || ls.icons[0] != inoOf(t, c):
		t.Errorf("listener's waiting connections %v, want client %d", ls.icons, inoOf(t, c))
	}
}

func TestParseUnixDiagErrors(t *testing.T) {
	msg := make([]byte, unixDiagMsgSize+8)
	binary.LittleEndian.PutUint16(msg[unixDiagMsgSize:], 8)
	binary.LittleEndian.PutUint16(msg[unixDiagMsgSize+2:], unixDiagPeer)
	binary.LittleEndian.PutUint32(msg[unixDiagMsgSize+4:], 77)
	d, err := parseUnixDiagMsg(msg)
	if err != nil || d.peer != 77 {
		t.Errorf("peer %v, %v", d, err)
	}
	binary.LittleEndian.PutUint16(msg[unixDiagMsgSize:], 99)
	if _, err := parseUnixDiagMsg(msg); err == nil {
		t.Errorf("an attribute longer than the message was accepted")
	}
	binary.LittleEndian.PutUint16(msg[unixDiagMsgSize:], 6)
	binary.LittleEndian.PutUint16(msg[unixDiagMsgSize+2:], unixDiagRQLen)
	if _, err := parseUnixDiagMsg(msg[:unixDiagMsgSize+6]); err == nil {
		t.Errorf("a short RQLEN was accepted")
	}
	if _, err := parseUnixDiagMsg(msg[:10]); err == nil {
		t.Errorf("a short message was accepted")
	}
}

// TestDumpUnixSockets dumps sockets of this process: a socketpair with
// data both ways, then only one end of another pair, which Finish
// refuses naming the descriptor and its peer.
func TestDumpUnixSockets(t *testing.T) {
	p := pair(t, unix.SOCK_SEQPACKET)
	unix.Write(p[0], []byte("to 1"))
	unix.Write(p[1], []byte("to 0"))
	unix.SetNonblock(p[1], true)
	files := &testFiles{}
	d := NewDumper(files, DumpOptions{})
	for _, fd := range p {
		if _, typ, err := d.Add(os.Getpid(), fd, uint64(inoOf(t, fd)), unix.O_RDWR); err != nil || typ.String() != "UNIXSK" {
			t.Fatalf("fd %d: %v %v", fd, typ, err)
		}
	}
	if err := d.finishUnix(); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, q := range d.unix.queues {
		got = append(got, fmt.Sprintf("%d:%s", q.IDFor, q.Data))
	}
	if fmt.Sprint(got) != "[1:to 0 2:to 1]" {
		t.Errorf("queues %v", got)
	}
	e := files.entries[0].GetUsk()
	if e.GetPeer() != inoOf(t, p[1]) || e.GetType() != unix.SOCK_SEQPACKET || e.GetShutdown() != skopts.SkShutdown_NONE || e.GetOpts().GetSoSndbuf() == 0 {
		t.Errorf("entry %v", e)
	}
	buf := make([]byte, 10)
	if n, _ := unix.Read(p[0], buf); string(buf[:n]) != "to 0" {
		t.Errorf("the dump took the message: %q", buf[:n])
	}
	img := imagetest.Dir(t)
	if err := writeSkQueues(img, d.unix.queues); err != nil {
		t.Fatal(err)
	}
	if q, _, err := ReadSkQueues(img); err != nil || string(q[2][0]) != "to 1" {
		t.Errorf("sk-queues.img read back %v, %v", q, err)
	}

	half := pair(t, unix.SOCK_STREAM)
	d = NewDumper(&testFiles{}, DumpOptions{})
	if _, _, err := d.Add(os.Getpid(), half[0], uint64(inoOf(t, half[0])), unix.O_RDWR); err != nil {
		t.Fatal(err)
	}
	err := d.finishUnix()
	want := []string{fmt.Sprintf("pid %d fd %d", os.Getpid(), half[0]), fmt.Sprint(inoOf(t, half[1])), "outside the dumped tree", "--ext-unix-sk"}
	for _, w := range want {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("error %v lacks %q", err, w)
		}
	}
}
