package restore

import (
	"testing"

	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/files"
)

// TestPlanTaskCtty: a session leader with a controlling terminal calls
// setsid, then TIOCSCTTY on amber's descriptor of the terminal, in its
// session section (before it forks the rest of its session); it gives the
// foreground to the dumped group in its final section, once every
// process is in its group. A process that does not lead its session does
// neither.
func TestPlanTaskCtty(t *testing.T) {
	for _, c := range []struct {
		name     string
		sid      uint32
		shellJob bool
		want     bool
	}{
		{"session leader", testPid, false, true},
		{"session leader as a shell job", testPid, true, true},
		{"not a session leader", 100, true, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			im := newImages()
			im.t.tree.Sid = proto.Uint32(c.sid)
			im.planLone(c.shellJob)
			h := im.host()
			h.shellJob = c.shellJob
			h.ttys = files.NewTerminals(nil, map[int]files.Ctty{testPid: {Fd: 0, What: "amber's terminal", Pgrp: 777}})
			p, err := planTask(im.t, h, &origin{current: stub()})
			if err != nil {
				t.Fatal(err)
			}
			// The session step runs once the process has forked the
			// children born in the session it had before.
			session, _ := p.prog.Section(sectionSession)
			final, _ := p.prog.Section(sectionFinal)
			setsid, take, ctty, fg := -1, -1, -1, -1
			for i, call := range p.prog.Calls {
				switch {
				case call.Nr == unix.SYS_SETSID:
					setsid = i
				case call.Nr == unix.SYS_PIDFD_GETFD && call.Args[1] == 0:
					take = i
				case call.Nr == unix.SYS_IOCTL && call.Args[1] == unix.TIOCSCTTY:
					ctty = i
				case call.Nr == unix.SYS_IOCTL && call.Args[1] == unix.TIOCSPGRP:
					fg = i
				}
			}
			if !c.want {
				if ctty >= 0 || fg >= 0 {
					t.Errorf("TIOCSCTTY at %d, TIOCSPGRP at %d; want neither\n%s", ctty, fg, p.prog)
				}
				return
			}
			if setsid < session.Start || take < setsid || ctty < take || ctty >= session.End {
				t.Errorf("setsid at %d, amber's fd 0 taken at %d, TIOCSCTTY at %d; want them in this order in the session section [%d, %d)\n%s", setsid, take, ctty, session.Start, session.End, p.prog)
			}
			if fg < final.Start || fg >= final.End {
				t.Errorf("TIOCSPGRP at %d; want it in the final section [%d, %d)\n%s", fg, final.Start, final.End, p.prog)
			}
		})
	}
}
