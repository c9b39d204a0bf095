// Package log is amber's levelled log, with CRIU's levels: 0 quiet,
// 1 errors, 2 warnings, 3 information, 4 debug. Errors always reach the
// error stream as well as the log file.
package log

import (
	"fmt"
	"io"
	"sync"
	"time"
)

// Levels, as CRIU's -v numbers them.
const (
	LevelError = 1
	LevelWarn  = 2
	LevelInfo  = 3
	LevelDebug = 4
)

// Logger writes timestamped lines at or below its level.
type Logger struct {
	mu     sync.Mutex
	out    io.Writer
	errOut io.Writer
	level  int
	start  time.Time
}

// New returns a logger writing to out (nil: nowhere) at level; errors are
// also written to errOut unless errOut is out.
func New(out, errOut io.Writer, level int) *Logger {
	return &Logger{out: out, errOut: errOut, level: level, start: time.Now()}
}

// Discard is a logger that writes nothing anywhere.
func Discard() *Logger { return New(nil, nil, 0) }

func (l *Logger) printf(level int, prefix, format string, args ...any) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	line := fmt.Sprintf("(%09.6f) %s%s\n", time.Since(l.start).Seconds(), prefix, fmt.Sprintf(format, args...))
	if l.out != nil && level <= l.level {
		io.WriteString(l.out, line)
	}
	if level == LevelError && l.errOut != nil && l.errOut != l.out {
		io.WriteString(l.errOut, line)
	}
}

// Errorf logs an error: always to the error stream, to the log at level >= 1.
func (l *Logger) Errorf(format string, args ...any) { l.printf(LevelError, "Error: ", format, args...) }

// Warnf logs a warning.
func (l *Logger) Warnf(format string, args ...any) { l.printf(LevelWarn, "Warn: ", format, args...) }

// Infof logs progress a user may want to follow.
func (l *Logger) Infof(format string, args ...any) { l.printf(LevelInfo, "", format, args...) }

// Debugf logs detail for debugging amber itself.
func (l *Logger) Debugf(format string, args ...any) { l.printf(LevelDebug, "", format, args...) }

// Enabled says whether messages of level would be written to the log.
func (l *Logger) Enabled(level int) bool { return l != nil && l.out != nil && level <= l.level }
