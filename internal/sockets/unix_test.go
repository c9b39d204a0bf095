package sockets

import (
	"bytes"
	"encoding/binary"
	"path"
	"strings"
	"testing"

	skunix "github.com/checkpoint-restore/go-criu/v8/crit/images/sk-unix"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
)

func TestSockaddr(t *testing.T) {
	e := &skunix.UnixSkEntry{Name: []byte("a.sock\x00"), NameDir: proto.String("/var/run")}
	addr, dir, err := sockaddr(e)
	if err != nil || dir != "/var/run" || !bytes.Equal(addr[2:], []byte("a.sock")) || binary.LittleEndian.Uint16(addr) != unix.AF_UNIX {
		t.Errorf("relative: %q %q %v", addr, dir, err)
	}
	if p := socketPath(e); p != "/var/run/a.sock" {
		t.Errorf("socketPath %q", p)
	}
	e = &skunix.UnixSkEntry{Name: []byte("\x00abs\x00tract")}
	if addr, dir, err := sockaddr(e); err != nil || dir != "" || !bytes.Equal(addr[2:], e.Name) || socketPath(e) != "" {
		t.Errorf("abstract: %q %q %v", addr, dir, err)
	}
	if got := unixName(e.Name); got != "@abs@tract" {
		t.Errorf("unixName %q", got)
	}
	e = &skunix.UnixSkEntry{Name: []byte("/" + strings.Repeat("x", sunPathMax))}
	if _, _, err := sockaddr(e); err == nil {
		t.Errorf("a name of %d bytes was accepted", len(e.Name))
	}
	if got := path.Base(socketPath(&skunix.UnixSkEntry{Name: []byte("/tmp/s\x00")})); got != "s" {
		t.Errorf("socketPath of an absolute name: %q", got)
	}
}
