package main

import (
	"fmt"
	"io"
	"os"

	"amber/internal/image"
	"amber/internal/log"
)

// runLog is the log of one run: Logger for the verbs (errors also reach
// stderr), plus the log alone for the final error, which fail prints to
// stderr itself.
type runLog struct {
	*log.Logger
	only   *log.Logger // the log without the stderr copy; nil when the log is stderr
	stderr io.Writer
	close  func()
}

// openLog opens the log -o names (created anew, never through a symbolic
// link: image.CreateLog), or logs to stderr without -o.
func openLog(o Options, stdout, stderr io.Writer) (*runLog, error) {
	switch path := o.LogPath(); path {
	case "":
		return &runLog{Logger: log.New(stderr, stderr, o.Verbosity), stderr: stderr, close: func() {}}, nil
	case "-":
		return newRunLog(stdout, stderr, o.Verbosity, func() {}), nil
	default:
		f, err := image.CreateLog(path)
		if err != nil {
			return nil, fmt.Errorf("log file: %w", err)
		}
		return newRunLog(f, stderr, o.Verbosity, func() { f.Close() }), nil
	}
}

func newRunLog(out, stderr io.Writer, level int, closeFn func()) *runLog {
	return &runLog{
		Logger: log.New(out, stderr, level),
		only:   log.New(out, nil, level),
		stderr: stderr,
		close:  closeFn,
	}
}

// fail reports the error that ends the run and returns exit status 1.
func (l *runLog) fail(err error) int {
	if l.only != nil {
		l.only.Errorf("%v", err)
	}
	fmt.Fprintf(l.stderr, "amber: %v\n", err)
	return 1
}

// pidFile is a --pidfile, created before restore so that an existing one
// fails the restore before anything runs, and written after.
type pidFile struct {
	f    *os.File
	path string
}

// createPidFile creates path exclusively, like criu (O_EXCL), never
// through a symbolic link. An empty path gives a nil *pidFile, whose
// methods do nothing.
func createPidFile(path string) (*pidFile, error) {
	if path == "" {
		return nil, nil
	}
	f, err := image.CreateNew(path)
	if err != nil {
		return nil, fmt.Errorf("pidfile: %w", err)
	}
	return &pidFile{f: f, path: path}, nil
}

// write stores pid in decimal, without a newline, as criu does.
func (p *pidFile) write(pid int) error {
	if p == nil {
		return nil
	}
	_, werr := fmt.Fprintf(p.f, "%d", pid)
	cerr := p.f.Close()
	if werr != nil {
		return fmt.Errorf("pidfile %s: %w", p.path, werr)
	}
	if cerr != nil {
		return fmt.Errorf("pidfile %s: %w", p.path, cerr)
	}
	return nil
}

// discard removes a pidfile of a failed restore.
func (p *pidFile) discard() {
	if p == nil {
		return
	}
	p.f.Close()
	os.Remove(p.path)
}
