package mounts

// Parsing /proc/PID/mountinfo (proc(5)).

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"

	"amber/internal/proc"

	"golang.org/x/sys/unix"
)

// Info is one line of mountinfo.
type Info struct {
	ID, Parent   uint32
	Major, Minor uint32
	Root         string // the part of the filesystem that is mounted
	Mountpoint   string // relative to the reading task's root
	Options      string // the mount's own options (rw,nosuid,...)
	Shared       uint32 // peer group, 0 if none
	Master       uint32 // peer group it receives from, 0 if none
	Unbindable   bool
	FSType       string
	Source       string
	SuperOptions string // the superblock's options
}

// ParseMountinfo reads mountinfo lines from r; name names it in errors.
func ParseMountinfo(r io.Reader, name string) ([]Info, error) {
	var out []Info
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		m, err := parseLine(sc.Text())
		if err != nil {
			return nil, fmt.Errorf("%s line %d: %w", name, n, err)
		}
		out = append(out, m)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return out, nil
}

// parseLine parses "ID PARENT MAJ:MIN ROOT MP OPTS [OPTIONAL...] - TYPE
// SOURCE SUPEROPTS". Fields are split at each single space: the kernel
// escapes spaces inside them (\040), and a field may be empty (a
// filesystem mounted with no source).
func parseLine(line string) (Info, error) {
	var m Info
	f := strings.Split(line, " ")
	sep := -1
	for i := 6; i < len(f); i++ {
		if f[i] == "-" {
			sep = i
			break
		}
	}
	if len(f) < 10 || sep < 0 || len(f) < sep+4 {
		return m, fmt.Errorf("malformed line %q", line)
	}
	id, err1 := strconv.ParseUint(f[0], 10, 32)
	parent, err2 := strconv.ParseUint(f[1], 10, 32)
	maj, min, ok := strings.Cut(f[2], ":")
	major, err3 := strconv.ParseUint(maj, 10, 32)
	minor, err4 := strconv.ParseUint(min, 10, 32)
	if err1 != nil || err2 != nil || err3 != nil || err4 != nil || !ok {
		return m, fmt.Errorf("malformed ids or device in %q", line)
	}
	m.ID, m.Parent, m.Major, m.Minor = uint32(id), uint32(parent), uint32(major), uint32(minor)
	m.Root, m.Mountpoint, m.Options = proc.UnescapeMountinfo(f[3]), proc.UnescapeMountinfo(f[4]), f[5]
	for _, o := range f[6:sep] {
		if err := m.optional(o); err != nil {
			return m, err
		}
	}
	m.FSType, m.Source, m.SuperOptions = proc.UnescapeMountinfo(f[sep+1]), proc.UnescapeMountinfo(f[sep+2]), f[sep+3]
	return m, nil
}

// optional reads one optional field: shared:N, master:N,
// propagate_from:N, unbindable.
func (m *Info) optional(o string) error {
	k, v, _ := strings.Cut(o, ":")
	switch k {
	case "shared", "master":
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return fmt.Errorf("malformed optional field %q", o)
		}
		if k == "shared" {
			m.Shared = uint32(n)
		} else {
			m.Master = uint32(n)
		}
	case "unbindable":
		m.Unbindable = true
	}
	return nil
}

// mntFlags are the per-mount options as MS_ flags, as CRIU writes them
// in MntEntry.flags: without atime options, the kernel's default
// relatime is not assumed but strictatime is written, as CRIU does.
func mntFlags(opts string) uint32 {
	var fl uint32
	for _, o := range strings.Split(opts, ",") {
		switch o {
		case "ro":
			fl |= unix.MS_RDONLY
		case "nosuid":
			fl |= unix.MS_NOSUID
		case "nodev":
			fl |= unix.MS_NODEV
		case "noexec":
			fl |= unix.MS_NOEXEC
		case "noatime":
			fl |= unix.MS_NOATIME
		case "nodiratime":
			fl |= unix.MS_NODIRATIME
		case "relatime":
			fl |= unix.MS_RELATIME
		}
	}
	if fl&(unix.MS_RELATIME|unix.MS_NOATIME) == 0 {
		fl |= unix.MS_STRICTATIME
	}
	return fl
}

// sbFlags splits the superblock's options into MS_ flags (ro, sync,
// dirsync, mand) and the rest, which a new mount is given as data.
func sbFlags(opts string) (uint32, string) {
	var fl uint32
	var rest []string
	for _, o := range strings.Split(opts, ",") {
		switch o {
		case "rw", "":
		case "ro":
			fl |= unix.MS_RDONLY
		case "sync":
			fl |= unix.MS_SYNCHRONOUS
		case "dirsync":
			fl |= unix.MS_DIRSYNC
		case "mand":
			fl |= unix.MS_MANDLOCK
		default:
			rest = append(rest, o)
		}
	}
	return fl, strings.Join(rest, ",")
}
