package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"amber/internal/files"
)

// setInheritFd reads --inherit-fd fd[N]:KEY, CRIU's: amber's descriptor
// N stands in for the file KEY names (pipe:[INO], socket:[INO], or a
// path without its leading slash) when restoring. CRIU's debug[N]:TEXT
// form, which only writes TEXT to N, is not supported.
func setInheritFd(o *Options, val string, _ bool) error {
	if strings.HasPrefix(val, "debug[") {
		return fmt.Errorf("--inherit-fd %q: debug[N]:TEXT: %w (only fd[N]:KEY is)", val, errNotSupported)
	}
	rest, ok := strings.CutPrefix(val, "fd[")
	if !ok {
		return fmt.Errorf("--inherit-fd %q: want fd[N]:KEY", val)
	}
	num, key, ok := strings.Cut(rest, "]:")
	fd, err := strconv.Atoi(num)
	if !ok || err != nil || fd < 0 || !isDigits(num) || key == "" {
		return fmt.Errorf("--inherit-fd %q: want fd[N]:KEY, N a descriptor number of amber's and KEY pipe:[INO], socket:[INO] or a path", val)
	}
	o.InheritFds = append(o.InheritFds, files.InheritFd{Key: key, Fd: fd})
	return nil
}

// checkInheritFds checks that each --inherit-fd descriptor is open, as
// CRIU does when it reads the option, before amber opens files of its
// own.
func checkInheritFds(o Options) error {
	var errs []error
	for _, in := range o.InheritFds {
		var st unix.Stat_t
		if err := unix.Fstat(in.Fd, &st); err != nil {
			errs = append(errs, fmt.Errorf("--inherit-fd fd[%d]:%s: fd %d is not open: %w", in.Fd, in.Key, in.Fd, err))
		}
	}
	return errors.Join(errs...)
}
