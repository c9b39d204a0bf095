package files

import (
	"strings"
	"testing"

	skunix "github.com/checkpoint-restore/go-criu/v8/crit/images/sk-unix"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
)

// extern marks an entry as CRIU's external socket.
func extern(e *skunix.UnixSkEntry) { e.Uflags = proto.Uint32(uskExtern) }

// TestPlanUnixExternal: with --ext-unix-sk a socket connected to an
// external one connects to its name again, and nothing is made for the
// external socket; without it the restore refuses, naming the option.
func TestPlanUnixExternal(t *testing.T) {
	build := func() *layout {
		l := newLayout()
		l.usk(70, unix.SOCK_DGRAM, tcpListen, 0, "/run/log\x00", extern)
		l.fd(3, l.usk(71, unix.SOCK_DGRAM, tcpEstablished, 70, ""), false)
		l.fd(4, l.usk(72, unix.SOCK_DGRAM, tcpEstablished, 70, ""), false)
		return l
	}
	l := build()
	l.in.ExtUnixSk = true
	w := newWorld()
	outside := &simSock{n: 99, typ: unix.SOCK_DGRAM, name: "/run/log", opts: map[int][]byte{}}
	w.names["/run/log"] = outside
	w.nodes["/run/log"] = &simNode{kind: "socket", mode: 0o777, linked: true}
	s, _ := runWorld(t, l, w)
	for _, fd := range []int{3, 4} {
		if k := checkSock(t, s, l, fd); k.peer != outside {
			t.Errorf("fd %d: peer %v, want the external socket", fd, k.peer)
		}
	}
	if n := len(s.fds); n != 2 {
		t.Errorf("%d descriptors left, want 2:\n%s", n, s.dump())
	}

	l = build()
	_, err := planFds(l)
	if err == nil || !strings.Contains(err.Error(), "--ext-unix-sk") || !strings.Contains(err.Error(), "external socket 70") {
		t.Errorf("without --ext-unix-sk: %v", err)
	}
}

// TestPlanUnixExternalErrors: what cannot connect again to an external
// socket is refused.
func TestPlanUnixExternalErrors(t *testing.T) {
	for name, c := range map[string]struct {
		build func(l *layout)
		want  string
	}{
		"stream": {func(l *layout) {
			l.usk(73, unix.SOCK_DGRAM, tcpListen, 0, "/run/log\x00", extern)
			l.fd(3, l.usk(74, unix.SOCK_STREAM, tcpEstablished, 73, ""), false)
		}, "only datagram"},
		"no name": {func(l *layout) {
			l.usk(75, unix.SOCK_DGRAM, tcpListen, 0, "", extern)
			l.fd(3, l.usk(76, unix.SOCK_DGRAM, tcpEstablished, 75, ""), false)
		}, "no name"},
		"held by a task": {func(l *layout) {
			l.fd(3, l.usk(77, unix.SOCK_DGRAM, tcpListen, 0, "/run/log\x00", extern), false)
		}, "held by a task"},
	} {
		t.Run(name, func(t *testing.T) {
			l := newLayout()
			l.in.ExtUnixSk = true
			c.build(l)
			if _, err := planFds(l); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want %q", err, c.want)
			}
		})
	}
}
