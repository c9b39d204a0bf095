package files

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/sys/unix"

	"amber/internal/plan"
)

// The simulator's model of a controlling terminal: the task (a session
// leader) makes a terminal taken from amber its controlling terminal
// with TIOCSCTTY, once, and then sets the foreground process group
// through it or through /dev/tty.

// simTty is the controlling terminal of the simulated task.
type simTty struct {
	ctty *simFile // nil: none
	fg   int32    // foreground process group set with TIOCSPGRP (0: none)
}

// ttyCall carries out c if it is a terminal ioctl, and reports whether
// it was.
func (s *fdSim) ttyCall(c plan.Call) (bool, error) {
	a := c.Args
	if c.Nr != unix.SYS_IOCTL || (a[1] != unix.TIOCSCTTY && a[1] != unix.TIOCSPGRP) {
		return false, nil
	}
	d, err := s.get(a[0])
	if err != nil {
		return true, err
	}
	if a[1] == unix.TIOCSCTTY {
		return true, s.setCtty(d.f, a[2])
	}
	return true, s.setForeground(d.f, a[2])
}

// setCtty is TIOCSCTTY: only a terminal (here: one taken from amber)
// can become the controlling terminal, of a session that has none.
func (s *fdSim) setCtty(f *simFile, arg uint64) error {
	if f.kind != "amber" {
		return fmt.Errorf("TIOCSCTTY on %v: %w", f, unix.ENOTTY)
	}
	if s.tty.ctty != nil || arg != 0 {
		return fmt.Errorf("TIOCSCTTY (steal %d) with a controlling terminal already: %w", arg, unix.EPERM)
	}
	s.tty.ctty = f
	return nil
}

// setForeground is TIOCSPGRP: through the controlling terminal itself or
// /dev/tty, which is it.
func (s *fdSim) setForeground(f *simFile, addr uint64) error {
	if s.tty.ctty == nil || (f != s.tty.ctty && (f.kind != "file" || f.path != "/dev/tty")) {
		return fmt.Errorf("TIOCSPGRP on %v, not the controlling terminal: %w", f, unix.ENOTTY)
	}
	b, err := s.mem(addr, 4)
	if err != nil {
		return err
	}
	s.tty.fg = int32(binary.LittleEndian.Uint32(b))
	return nil
}
