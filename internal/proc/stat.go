package proc

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Stat is /proc/PID/stat; proc(5) numbers its fields from 1 (pid). The
// kernel prints the address fields (26-28, 45-51) as 0 unless the reader
// may ptrace the task, and for zombies.
type Stat struct {
	Pid        int
	Comm       string // raw, as prctl(PR_SET_NAME) set it
	State      byte
	PPid       int
	Pgrp       int
	Session    int
	TtyNr      int
	Tpgid      int
	Flags      uint32
	Priority   int64
	Nice       int64
	NumThreads int
	StartTime  uint64 // clock ticks after boot

	StartCode, EndCode, StartStack uint64 // fields 26, 27, 28

	ExitSignal int // field 38

	// Fields 45..51, present since Linux 3.5.
	StartData, EndData, StartBrk, ArgStart, ArgEnd, EnvStart, EnvEnd uint64

	ExitCode int // field 52
}

// statFields is the number of fields ParseStat needs: up to exit_code.
const statFields = 52

// ParseStat parses the text of /proc/PID/stat. Comm is taken between the
// first '(' and the LAST ')', because a task name may contain spaces and
// parentheses.
func ParseStat(b []byte) (Stat, error) {
	var st Stat
	open := bytes.IndexByte(b, '(')
	end := bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return Stat{}, errors.New("field 2 (comm): no parenthesised name")
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b[:open])))
	if err != nil {
		return Stat{}, fmt.Errorf("field 1 (pid): %w", err)
	}
	st.Pid, st.Comm = pid, string(b[open+1:end])
	// Field 3 is the first after the comm.
	d := statDecoder{fields: append([]string{"", ""}, strings.Fields(string(b[end+1:]))...)}
	if n := len(d.fields); n < statFields {
		return Stat{}, fmt.Errorf("%d fields, want at least %d", n, statFields)
	}
	d.fill(&st)
	if d.err != nil {
		return Stat{}, d.err
	}
	return st, nil
}

// ReadStat reads /proc/PID/stat.
func ReadStat(pid int) (Stat, error) {
	return readStatFile(pidPath(pid, "stat"))
}

// ReadTaskStat reads /proc/PID/task/TID/stat.
func ReadTaskStat(pid, tid int) (Stat, error) {
	return readStatFile(taskPath(pid, tid, "stat"))
}

// readStatFile reads and parses a stat file of a process or a thread.
func readStatFile(path string) (Stat, error) {
	b, err := ReadFile(path)
	if err != nil {
		return Stat{}, err
	}
	st, err := ParseStat(b)
	if err != nil {
		return Stat{}, fmt.Errorf("%s: %w", path, err)
	}
	return st, nil
}

// statDecoder converts stat fields by their proc(5) number and keeps the
// first error, so fill reads as the list of fields it takes.
type statDecoder struct {
	fields []string // fields[n-1] is field n
	err    error
}

// fill decodes fields 3 onwards into st.
func (d *statDecoder) fill(st *Stat) {
	st.State = d.state()
	st.PPid = d.int(4, "ppid")
	st.Pgrp = d.int(5, "pgrp")
	st.Session = d.int(6, "session")
	st.TtyNr = d.int(7, "tty_nr")
	st.Tpgid = d.int(8, "tpgid")
	st.Flags = uint32(d.uint(9, "flags", 32))
	st.Priority = d.int64(18, "priority")
	st.Nice = d.int64(19, "nice")
	st.NumThreads = d.int(20, "num_threads")
	st.StartTime = d.uint(22, "starttime", 64)
	st.StartCode = d.uint(26, "startcode", 64)
	st.EndCode = d.uint(27, "endcode", 64)
	st.StartStack = d.uint(28, "startstack", 64)
	st.ExitSignal = d.int(38, "exit_signal")
	st.StartData = d.uint(45, "start_data", 64)
	st.EndData = d.uint(46, "end_data", 64)
	st.StartBrk = d.uint(47, "start_brk", 64)
	st.ArgStart = d.uint(48, "arg_start", 64)
	st.ArgEnd = d.uint(49, "arg_end", 64)
	st.EnvStart = d.uint(50, "env_start", 64)
	st.EnvEnd = d.uint(51, "env_end", 64)
	st.ExitCode = d.int(52, "exit_code")
}

// fail records the first error, naming the field.
func (d *statDecoder) fail(n int, name string, err error) {
	if d.err == nil {
		d.err = fmt.Errorf("field %d (%s): %w", n, name, err)
	}
}

// state decodes field 3, one letter such as 'R' or 'S'.
func (d *statDecoder) state() byte {
	s := d.fields[2]
	if len(s) != 1 {
		d.fail(3, "state", fmt.Errorf("%q is not one character", s))
		return 0
	}
	return s[0]
}

// int decodes a field the kernel prints as a C int.
func (d *statDecoder) int(n int, name string) int {
	v, err := strconv.ParseInt(d.fields[n-1], 10, 32)
	if err != nil {
		d.fail(n, name, err)
	}
	return int(v)
}

// int64 decodes a field the kernel prints as a C long.
func (d *statDecoder) int64(n int, name string) int64 {
	v, err := strconv.ParseInt(d.fields[n-1], 10, 64)
	if err != nil {
		d.fail(n, name, err)
	}
	return v
}

// uint decodes an unsigned field of the given bit size.
func (d *statDecoder) uint(n int, name string, bits int) uint64 {
	v, err := strconv.ParseUint(d.fields[n-1], 10, bits)
	if err != nil {
		d.fail(n, name, err)
	}
	return v
}
