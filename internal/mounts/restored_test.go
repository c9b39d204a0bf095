package mounts

import (
	"testing"

	"golang.org/x/sys/unix"
)

// TestRestoredHoldsNothing: a namespace's record, made for Restore or
// RestoreCopy, holds no descriptor of the tree's /proc until it opens
// one: closing it must not close descriptor 0 (it did, for a copied
// namespace, whose record left procFd at its zero value).
func TestRestoredHoldsNothing(t *testing.T) {
	r := newRestored(1, nil)
	if fd := r.TreeProc(); fd != -1 {
		t.Fatalf("TreeProc of a new record: %d, want -1", fd)
	}
	fd, err := unix.Dup(0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	saved, err := unix.Dup(fd)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { unix.Dup2(saved, 0); unix.Close(saved) }()
	r.Close()
	if _, err := unix.FcntlInt(0, unix.F_GETFD, 0); err != nil {
		t.Errorf("descriptor 0 after Close of a new record: %v", err)
	}
}
