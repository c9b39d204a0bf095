package files

import (
	"fmt"
	"os"
	"syscall"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	"golang.org/x/sys/unix"

	"amber/internal/proc"
)

// Terminals that are neither a pty side nor a --shell-job's: the
// console, and /dev/tty of a process whose controlling terminal is a pty
// of the tree. Both are REG files of their path, as a --shell-job's
// terminal is.
//
//   - The console (/dev/console, 5:1, or a node of it elsewhere) never
//     becomes a controlling terminal: it is opened again by its path.
//   - /dev/tty (5:0) is whatever terminal controls the opener. The dump
//     takes it when that terminal is a pty whose both sides are dumped:
//     the restore gives the session leader that pty back as its
//     controlling terminal (PlanCtty), and /dev/tty is opened in the
//     final section, once it has it, like the late files under /proc
//     (late.go).
//
// A virtual console is a TTY file (tty_vt.go). Any other terminal (a
// serial line, /dev/tty of a terminal outside the tree) still needs
// --shell-job.

// devTTY is the path of the controlling terminal's device.
const devTTY = "/dev/tty"

// Device numbers of /dev/tty and /dev/console (TTYAUX_MAJOR).
const (
	cttyMinor    = 0
	consoleMinor = 1
)

// cttyUser is a descriptor of /dev/tty that the dump took: the pty that
// controls its process must be dumped whole.
type cttyUser struct {
	pid, fd int
	index   uint32 // the pty's
}

// addTerminal records a terminal of a dump without --shell-job: the
// console, or /dev/tty over a pty; it refuses any other.
func (d *Dumper) addTerminal(t *Table, pid, fd int, link string, st os.FileInfo, flags uint32) (uint32, error) {
	rdev := st.Sys().(*syscall.Stat_t).Rdev
	if unix.Major(rdev) == ttyAuxMajor && unix.Minor(rdev) == consoleMinor {
		return t.addReg(link, flags, 0, st), nil
	}
	if unix.Major(rdev) != ttyAuxMajor || unix.Minor(rdev) != cttyMinor {
		return 0, fmt.Errorf("%s: a terminal needs --shell-job", link)
	}
	ps, err := proc.ReadStat(pid)
	if err != nil {
		return 0, err
	}
	if ptyOfRdev(uint64(ps.TtyNr)) != ptySlave {
		return 0, fmt.Errorf("%s: the controlling terminal (device %d:%d) is not a pty: a terminal needs --shell-job",
			link, unix.Major(uint64(ps.TtyNr)), unix.Minor(uint64(ps.TtyNr)))
	}
	d.cttyUsers = append(d.cttyUsers, cttyUser{pid: pid, fd: fd, index: slaveIndex(uint64(ps.TtyNr))})
	return t.addReg(devTTY, flags, 0, st), nil
}

// checkCttyUsers refuses /dev/tty of a process whose pty was not dumped
// with both its sides: the restore could not make it the controlling
// terminal again.
func (d *Dumper) checkCttyUsers() error {
	for _, u := range d.cttyUsers {
		whole := d.ttys != nil && d.ttys.sides[ttyInfoID(u.index, ptyMaster)] != nil && d.ttys.sides[ttyInfoID(u.index, ptySlave)] != nil
		if !whole {
			return fmt.Errorf("pid %d fd %d: %s: its controlling terminal /dev/pts/%d is not dumped with both its sides: "+
				"a terminal needs --shell-job", u.pid, u.fd, devTTY, u.index)
		}
	}
	return nil
}

// isCttyDevice tells /dev/tty of a dump without --shell-job, opened in
// the final section (a --shell-job's is amber's terminal).
func isCttyDevice(e *fdinfo.FileEntry, shellJob bool) bool {
	return !shellJob && e.GetType() == fdinfo.FdTypes_REG && e.GetReg().GetName() == devTTY
}
