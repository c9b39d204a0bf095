package dump

import (
	"encoding/binary"
	"testing"

	"golang.org/x/sys/unix"
)

func siginfoOf(sig unix.Signal) []byte {
	si := make([]byte, 128)
	binary.LittleEndian.PutUint32(si, uint32(sig))
	return si
}

// TestWithoutStops: a stopped process's queue loses SIGSTOP and the
// unblocked job-control stops, and keeps everything else in order.
func TestWithoutStops(t *testing.T) {
	q := [][]byte{siginfoOf(unix.SIGUSR1), siginfoOf(unix.SIGSTOP), siginfoOf(unix.SIGTSTP),
		siginfoOf(unix.SIGTTIN), siginfoOf(unix.SIGTTOU), siginfoOf(unix.SIGCONT)}
	blocked := uint64(1) << (unix.SIGTTIN - 1)
	var got []unix.Signal
	for _, si := range withoutStops(q, blocked) {
		got = append(got, signo(si))
	}
	want := []unix.Signal{unix.SIGUSR1, unix.SIGTTIN, unix.SIGCONT}
	if len(got) != len(want) {
		t.Fatalf("kept %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("kept %v, want %v", got, want)
		}
	}
}
