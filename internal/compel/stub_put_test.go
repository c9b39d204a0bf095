package compel

import (
	"fmt"
	"testing"

	"golang.org/x/sys/unix"
)

// TestStubPut: a stub in a user namespace of its own, which may not
// take amber's descriptors, is given them by Put: each is amber's very
// open file (a pipe whose bytes the stub's copy reads), under a number
// of the stub's, several in a row.
func TestStubPut(t *testing.T) {
	stub := testStub(t)
	if err := stub.Unshare(unix.CLONE_NEWUSER); err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for i := range 3 {
		var p [2]int
		if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
			t.Fatal(err)
		}
		got, err := stub.Put(p[0])
		unix.Close(p[0])
		if err != nil {
			t.Fatal(err)
		}
		if seen[got] {
			t.Fatalf("put %d: fd %d given twice", i, got)
		}
		seen[got] = true
		msg := fmt.Sprintf("pipe %d", i)
		unix.Write(p[1], []byte(msg))
		unix.Close(p[1])
		// amber reads through the stub's copy: the same pipe.
		theirs, err := unix.Open(fmt.Sprintf("/proc/%d/fd/%d", stub.Pid, got), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 64)
		n, _ := unix.Read(theirs, buf)
		unix.Close(theirs)
		if string(buf[:n]) != msg {
			t.Fatalf("put %d: the stub's fd %d reads %q, want %q", i, got, buf[:n], msg)
		}
	}
}
