package proc

import (
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Status is the part of /proc/PID/status that a checkpoint needs.
type Status struct {
	Name      string // unescaped: the kernel prints '\n' as `\n` and '\' as `\\`
	Umask     uint32 // from the octal "Umask:" line (Linux 4.7+)
	HasUmask  bool   // whether the kernel printed "Umask:"
	State     byte
	Tgid      int
	Pid       int
	PPid      int
	TracerPid int
	Uid, Gid  [4]uint32 // real, effective, saved, fs
	Groups    []uint32  // supplementary groups; nil if none

	// Ids in each pid namespace the task is in, starting with the one
	// that mounted /proc and going inward (Linux 4.1+; nil before).
	NSpid, NStgid, NSpgid, NSsid []int

	Threads int

	SigPnd, ShdPnd, SigBlk, SigIgn, SigCgt uint64 // signal masks, bit n-1 for signal n
	CapInh, CapPrm, CapEff, CapBnd, CapAmb uint64 // CapAmb is 0 before Linux 4.3

	NoNewPrivs int // 0 before Linux 4.10
	Seccomp    int // SECCOMP_MODE_*; 0 without CONFIG_SECCOMP
}

// ParseStatus parses the text of /proc/PID/status. Unknown lines are
// skipped; the lines every supported kernel prints are required, so a
// truncated file is not mistaken for a process with no capabilities.
func ParseStatus(r io.Reader) (Status, error) {
	var s Status
	seen := make(map[string]bool)
	err := eachLine(r, func(line string) error {
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			return fmt.Errorf("%q: no colon", line)
		}
		seen[key] = true
		if err := s.set(key, val); err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		return nil
	})
	if err != nil {
		return Status{}, err
	}
	for _, key := range []string{"Name", "State", "Tgid", "Pid", "PPid",
		"TracerPid", "Uid", "Gid", "Groups", "Threads", "SigPnd", "ShdPnd",
		"SigBlk", "SigIgn", "SigCgt", "CapInh", "CapPrm", "CapEff", "CapBnd"} {
		if !seen[key] {
			return Status{}, fmt.Errorf("no %q line", key+":")
		}
	}
	s.HasUmask = seen["Umask"]
	return s, nil
}

// ReadStatus reads /proc/PID/status.
func ReadStatus(pid int) (Status, error) {
	return readParsed(pidPath(pid, "status"), ParseStatus)
}

// ReadTaskStatus reads /proc/PID/task/TID/status: one thread's, whose
// credentials and signal masks are its own.
func ReadTaskStatus(pid, tid int) (Status, error) {
	return readParsed(taskPath(pid, tid, "status"), ParseStatus)
}

// set stores the value of one line. raw is everything after the colon.
func (s *Status) set(key, raw string) error {
	if key == "Name" {
		// Only the tab separator is trimmed: spaces are part of a name.
		s.Name = unescapeName(strings.TrimPrefix(raw, "\t"))
		return nil
	}
	val := strings.TrimSpace(raw)
	if p := s.intField(key); p != nil {
		n, err := strconv.ParseInt(val, 10, 32)
		*p = int(n)
		return err
	}
	if p := s.maskField(key); p != nil {
		var err error
		*p, err = strconv.ParseUint(val, 16, 64)
		return err
	}
	if p := s.pidsField(key); p != nil {
		var err error
		*p, err = parseInts(val)
		return err
	}
	return s.setOther(key, val)
}

// setOther stores the lines that need their own parsing.
func (s *Status) setOther(key, val string) error {
	var err error
	switch key {
	case "Umask":
		var n uint64
		n, err = strconv.ParseUint(val, 8, 32)
		s.Umask = uint32(n)
	case "State":
		if val == "" {
			return fmt.Errorf("empty")
		}
		s.State = val[0]
	case "Uid":
		err = parseIDs(s.Uid[:], val)
	case "Gid":
		err = parseIDs(s.Gid[:], val)
	case "Groups":
		s.Groups, err = parseUint32s(val)
	}
	return err
}

// intField returns the field a decimal line fills, or nil.
func (s *Status) intField(key string) *int {
	switch key {
	case "Tgid":
		return &s.Tgid
	case "Pid":
		return &s.Pid
	case "PPid":
		return &s.PPid
	case "TracerPid":
		return &s.TracerPid
	case "Threads":
		return &s.Threads
	case "NoNewPrivs":
		return &s.NoNewPrivs
	case "Seccomp":
		return &s.Seccomp
	}
	return nil
}

// maskField returns the field a hex mask line fills, or nil.
func (s *Status) maskField(key string) *uint64 {
	switch key {
	case "SigPnd":
		return &s.SigPnd
	case "ShdPnd":
		return &s.ShdPnd
	case "SigBlk":
		return &s.SigBlk
	case "SigIgn":
		return &s.SigIgn
	case "SigCgt":
		return &s.SigCgt
	case "CapInh":
		return &s.CapInh
	case "CapPrm":
		return &s.CapPrm
	case "CapEff":
		return &s.CapEff
	case "CapBnd":
		return &s.CapBnd
	case "CapAmb":
		return &s.CapAmb
	}
	return nil
}

// pidsField returns the field a per-namespace id list fills, or nil.
func (s *Status) pidsField(key string) *[]int {
	switch key {
	case "NSpid":
		return &s.NSpid
	case "NStgid":
		return &s.NStgid
	case "NSpgid":
		return &s.NSpgid
	case "NSsid":
		return &s.NSsid
	}
	return nil
}

// parseIDs parses the four tab-separated ids of a Uid: or Gid: line.
func parseIDs(dst []uint32, val string) error {
	ids, err := parseUint32s(val)
	if err != nil {
		return err
	}
	if len(ids) != len(dst) {
		return fmt.Errorf("%d ids, want %d", len(ids), len(dst))
	}
	copy(dst, ids)
	return nil
}

// parseUint32s parses whitespace-separated decimal ids.
func parseUint32s(val string) ([]uint32, error) {
	var out []uint32
	for _, f := range strings.Fields(val) {
		n, err := strconv.ParseUint(f, 10, 32)
		if err != nil {
			return nil, err
		}
		out = append(out, uint32(n))
	}
	return out, nil
}

// unescapeName undoes the kernel's escaping of the Name: line, which
// escapes only newline (as `\n`) and backslash (as `\\`).
func unescapeName(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	return strings.NewReplacer(`\\`, `\`, `\n`, "\n").Replace(s)
}
