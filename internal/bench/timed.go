package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// commandTimeout bounds one amber or floor command.
const commandTimeout = 5 * time.Minute

// timed is what one timed command did.
type timed struct {
	wall   time.Duration // from fork to reaping it
	maxRSS int64         // peak resident set, bytes (rusage maxrss)
	stdout string
	stderr string
}

// commandError is a command that failed; Line is the first line of its
// stderr, which names amber's error.
type commandError struct {
	Cmd  string
	Err  error
	Line string
}

func (e *commandError) Error() string {
	if e.Line == "" {
		return fmt.Sprintf("%s: %v", e.Cmd, e.Err)
	}
	return fmt.Sprintf("%s: %v: %s", e.Cmd, e.Err, e.Line)
}

func (e *commandError) Unwrap() error { return e.Err }

// runTimed runs bin with args in dir, stdin /dev/null, and its stdout and
// stderr going to dir/name.stdout and dir/name.stderr (files, not pipes, so
// that a process it leaves running cannot hold the bench up). It times the
// command and reads its peak RSS from the child's rusage.
func runTimed(dir, name string, bin string, args ...string) (timed, error) {
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	stdout, stderr := filepath.Join(dir, name+".stdout"), filepath.Join(dir, name+".stderr")
	outF, err := os.Create(stdout)
	if err != nil {
		return timed{}, fmt.Errorf("%s: %w", name, err)
	}
	defer outF.Close()
	errF, err := os.Create(stderr)
	if err != nil {
		return timed{}, fmt.Errorf("%s: %w", name, err)
	}
	defer errF.Close()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, outF, errF
	start := time.Now()
	runErr := cmd.Run()
	t := timed{wall: time.Since(start), stdout: readString(stdout), stderr: readString(stderr)}
	if cmd.ProcessState != nil {
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			t.maxRSS = ru.Maxrss * 1024 // kilobytes on Linux
		}
	}
	if ctx.Err() != nil {
		runErr = fmt.Errorf("timed out after %v: %w", commandTimeout, runErr)
	}
	if runErr != nil {
		return t, &commandError{Cmd: name, Err: runErr, Line: firstLine(t.stderr)}
	}
	return t, nil
}

func readString(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

// firstLine is the first non-blank line of s, trimmed.
func firstLine(s string) string {
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			return l
		}
	}
	return ""
}

// failureLine is the line that best names why err happened: the first
// line of a failed command's stderr, else the error itself.
func failureLine(err error) string {
	var ce *commandError
	if errors.As(err, &ce) && ce.Line != "" {
		return ce.Line
	}
	return firstLine(err.Error())
}
