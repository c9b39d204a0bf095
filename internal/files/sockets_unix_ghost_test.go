package files

import (
	"fmt"
	"io/fs"
	"slices"
	"testing"

	skunix "github.com/checkpoint-restore/go-criu/v8/crit/images/sk-unix"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/plan"
)

// TestPlanUnixGhost checks the file system calls of sockets whose files
// were deleted since the dump: a server in a directory gone since (made
// and removed again) with a client that reaches it through the kept
// O_PATH descriptor, and one whose path holds another file now (moved
// aside and back).
func TestPlanUnixGhost(t *testing.T) {
	l := newLayout()
	deleted := func(e *skunix.UnixSkEntry) { e.Deleted = proto.Bool(true) }
	srv := l.usk(30, unix.SOCK_DGRAM, tcpEstablished, 0, "/g/d/srv", deleted)
	cli := l.usk(31, unix.SOCK_DGRAM, tcpEstablished, 30, "")
	fifo := l.usk(32, unix.SOCK_DGRAM, tcpClose, 0, "/g/f", deleted)
	l.withModes(map[string]fs.FileMode{"/g": fs.ModeDir, "/g/f": fs.ModeNamedPipe})
	l.fd(3, srv, false).fd(4, cli, false).fd(5, fifo, false)
	p, err := planFds(l)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range p.prog.Calls {
		switch c.Nr {
		case unix.SYS_MKDIRAT, unix.SYS_UNLINKAT:
			got = append(got, fmt.Sprintf("%s %s %#x", plan.SyscallName(c.Nr), cString(t, p.prog, c.Args[1]), c.Args[2]))
		case unix.SYS_RENAMEAT:
			got = append(got, fmt.Sprintf("rename %s %s", cString(t, p.prog, c.Args[1]), cString(t, p.prog, c.Args[3])))
		case unix.SYS_BIND, unix.SYS_CONNECT:
			addr := p.prog.Image[c.Args[1]-p.prog.Base+2 : c.Args[1]-p.prog.Base+c.Args[2]]
			got = append(got, fmt.Sprintf("%s %s", plan.SyscallName(c.Nr), addr))
		case unix.SYS_OPENAT:
			if c.Args[2]&unix.O_PATH != 0 {
				got = append(got, "keep "+cString(t, p.prog, c.Args[1]))
			}
		}
	}
	// The kept descriptor lands above the table and the two sockets.
	want := []string{
		"mkdirat /g/d 0x1ed", "bind /g/d/srv", "keep /g/d/srv", "unlinkat /g/d/srv 0x0", "unlinkat /g/d 0x200",
		"connect /proc/self/fd/8",
		"rename /g/f /g/f.amber-ghost-0", "bind /g/f", "keep /g/f", "unlinkat /g/f 0x0", "rename /g/f.amber-ghost-0 /g/f",
	}
	if !slices.Equal(got, want) {
		t.Errorf("calls:\n%q\nwant:\n%q\nplan:\n%s", got, want, p.prog)
	}
}
