package files

import (
	"strings"
	"testing"
)

// /dev/tty is taken without --shell-job only over a pty dumped whole.
func TestCheckCttyUsers(t *testing.T) {
	d := &Dumper{cttyUsers: []cttyUser{{pid: 7, fd: 3, index: 4}}}
	if err := d.checkCttyUsers(); err == nil || !strings.Contains(err.Error(), "pid 7 fd 3: /dev/tty") || !strings.Contains(err.Error(), "/dev/pts/4") {
		t.Errorf("no pty dumped: %v", err)
	}
	d.ttys = &ttyDump{sides: map[uint32]*dumpedSide{ttyInfoID(4, ptySlave): {}}}
	if err := d.checkCttyUsers(); err == nil {
		t.Error("slave only: no error")
	}
	d.ttys.sides[ttyInfoID(4, ptyMaster)] = &dumpedSide{}
	if err := d.checkCttyUsers(); err != nil {
		t.Errorf("whole pty: %v", err)
	}
}
