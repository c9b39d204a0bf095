package proc

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"syscall"
	"testing"
)

// noSuchPid is above PID_MAX_LIMIT (4M), so never a live process.
const noSuchPid = 1 << 30

func TestGoneIsNotExist(t *testing.T) {
	read := &fs.PathError{Op: "read", Path: "/proc/1/stat", Err: syscall.ESRCH}
	err := fmt.Errorf("wrapped: %w", gone(read))
	if !errors.Is(err, fs.ErrNotExist) || !errors.Is(err, syscall.ESRCH) {
		t.Errorf("gone(ESRCH) = %v: want both fs.ErrNotExist and ESRCH", err)
	}
	if err := gone(syscall.EACCES); errors.Is(err, fs.ErrNotExist) {
		t.Errorf("gone(EACCES) = %v: must not be fs.ErrNotExist", err)
	}
	if gone(nil) != nil {
		t.Error("gone(nil) != nil")
	}
}

func TestEachLineTooLong(t *testing.T) {
	long := make([]byte, maxLine+1)
	err := eachLine(bytes.NewReader(long), func(string) error { return nil })
	if err == nil {
		t.Error("no error for a line longer than maxLine")
	}
}
