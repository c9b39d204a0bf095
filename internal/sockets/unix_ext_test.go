package sockets

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
)

// TestDumpUnixExternal: with --ext-unix-sk a datagram socket connected
// to a named one not dumped adds CRIU's external entry for that one; a
// stream connection is still refused.
func TestDumpUnixExternal(t *testing.T) {
	path := t.TempDir() + "/log"
	srv, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(srv)
	if err := unix.Bind(srv, &unix.SockaddrUnix{Name: path}); err != nil {
		t.Fatal(err)
	}
	cli, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(cli)
	if err := unix.Connect(cli, &unix.SockaddrUnix{Name: path}); err != nil {
		t.Fatal(err)
	}
	for _, ext := range []bool{false, true} {
		files := &testFiles{}
		d := NewDumper(files, DumpOptions{ExtUnixSk: ext})
		if _, _, err := d.Add(os.Getpid(), cli, uint64(inoOf(t, cli)), unix.O_RDWR); err != nil {
			t.Fatal(err)
		}
		err := d.finishUnix()
		if !ext {
			if err == nil || !strings.Contains(err.Error(), "outside the dumped tree") {
				t.Errorf("without --ext-unix-sk: %v", err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		es := files.entries
		if len(es) != 2 {
			t.Fatalf("%d entries, want the socket and its external peer", len(es))
		}
		e := es[1].GetUsk()
		if e.GetIno() != inoOf(t, srv) || e.GetUflags() != uskExtern || pathName(e.GetName()) != path || e.GetType() != unix.SOCK_DGRAM || e.GetId() != es[1].GetId() {
			t.Errorf("external entry %v", e)
		}
		if _, err := proto.Marshal(es[1]); err != nil {
			t.Errorf("external entry cannot be written: %v", err)
		}
		if es[0].GetUsk().GetPeer() != e.GetIno() {
			t.Errorf("socket's peer %d, want %d", es[0].GetUsk().GetPeer(), e.GetIno())
		}
	}

	half := pair(t, unix.SOCK_STREAM)
	d := NewDumper(&testFiles{}, DumpOptions{ExtUnixSk: true})
	if _, _, err := d.Add(os.Getpid(), half[0], uint64(inoOf(t, half[0])), unix.O_RDWR); err != nil {
		t.Fatal(err)
	}
	err = d.finishUnix()
	for _, w := range []string{fmt.Sprintf("fd %d", half[0]), "stream", "cannot be dumped"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("stream: error %v lacks %q", err, w)
		}
	}
}
