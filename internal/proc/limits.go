package proc

import (
	"cmp"
	"fmt"
	"io"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Limit is one row of /proc/PID/limits. Soft and Hard are RLIM_INFINITY
// (^uint64(0)) for "unlimited".
type Limit struct {
	Name     string // row name, e.g. "Max open files"
	Resource int    // unix.RLIMIT_*
	Soft     uint64
	Hard     uint64
}

// numLimits is RLIM_NLIMITS: RLIMIT_CPU..RLIMIT_RTTIME.
const numLimits = 16

// limitRows returns the rows the kernel prints (fs/proc/base.c lnames),
// with the resource number of this architecture: mips, sparc and alpha
// number some resources differently.
func limitRows() []Limit {
	return []Limit{
		{Name: "Max cpu time", Resource: unix.RLIMIT_CPU},
		{Name: "Max file size", Resource: unix.RLIMIT_FSIZE},
		{Name: "Max data size", Resource: unix.RLIMIT_DATA},
		{Name: "Max stack size", Resource: unix.RLIMIT_STACK},
		{Name: "Max core file size", Resource: unix.RLIMIT_CORE},
		{Name: "Max resident set", Resource: unix.RLIMIT_RSS},
		{Name: "Max processes", Resource: unix.RLIMIT_NPROC},
		{Name: "Max open files", Resource: unix.RLIMIT_NOFILE},
		{Name: "Max locked memory", Resource: unix.RLIMIT_MEMLOCK},
		{Name: "Max address space", Resource: unix.RLIMIT_AS},
		{Name: "Max file locks", Resource: unix.RLIMIT_LOCKS},
		{Name: "Max pending signals", Resource: unix.RLIMIT_SIGPENDING},
		{Name: "Max msgqueue size", Resource: unix.RLIMIT_MSGQUEUE},
		{Name: "Max nice priority", Resource: unix.RLIMIT_NICE},
		{Name: "Max realtime priority", Resource: unix.RLIMIT_RTPRIO},
		{Name: "Max realtime timeout", Resource: unix.RLIMIT_RTTIME},
	}
}

// ParseLimits parses /proc/PID/limits and returns its rows indexed by
// resource number (length 16, RLIMIT_CPU..RLIMIT_RTTIME). A missing,
// repeated or unknown row is an error: a limit amber cannot name is one it
// would silently fail to restore.
func ParseLimits(r io.Reader) ([]Limit, error) {
	byName := make(map[string]Limit, numLimits)
	for _, l := range limitRows() {
		byName[l.Name] = l
	}
	out := make([]Limit, numLimits)
	header := true
	err := eachLine(r, func(line string) error {
		if header {
			header = false
			if !strings.HasPrefix(line, "Limit ") {
				return fmt.Errorf("header %q: want \"Limit  Soft Limit  Hard Limit  Units\"", line)
			}
			return nil
		}
		return parseLimitRow(line, byName, out)
	})
	if err != nil {
		return nil, err
	}
	for _, l := range limitRows() {
		if out[l.Resource].Name == "" {
			return nil, fmt.Errorf("no %q row", l.Name)
		}
	}
	return out, nil
}

// ReadLimits reads /proc/PID/limits.
func ReadLimits(pid int) ([]Limit, error) {
	return readParsed(pidPath(pid, "limits"), ParseLimits)
}

// parseLimitRow parses "NAME SOFT HARD [UNITS]" into out. Names are words
// without digits, so the name ends at the first number or "unlimited".
func parseLimitRow(line string, byName map[string]Limit, out []Limit) error {
	f := strings.Fields(line)
	i := 0
	for i < len(f) && f[i] != "unlimited" && (f[i][0] < '0' || f[i][0] > '9') {
		i++
	}
	name := strings.Join(f[:i], " ")
	l, ok := byName[name]
	switch {
	case !ok:
		return fmt.Errorf("unknown limit %q", name)
	case len(f)-i < 2 || len(f)-i > 3:
		return fmt.Errorf("%q: want soft, hard and units", line)
	case out[l.Resource].Name != "":
		return fmt.Errorf("%q: repeated", name)
	}
	var err1, err2 error
	l.Soft, err1 = parseRlim(f[i])
	l.Hard, err2 = parseRlim(f[i+1])
	if err := cmp.Or(err1, err2); err != nil {
		return fmt.Errorf("%q: %w", name, err)
	}
	out[l.Resource] = l
	return nil
}

// parseRlim parses a soft or hard value: a decimal or "unlimited".
func parseRlim(s string) (uint64, error) {
	if s == "unlimited" {
		return unix.RLIM_INFINITY, nil
	}
	return strconv.ParseUint(s, 10, 64)
}
