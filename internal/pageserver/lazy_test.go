package pageserver

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"
)

// runReader serves one lazy run of one process: each page filled with a
// byte of its address. It answers at most short bytes at once, if set,
// as CRIU's server answers at most what one of its pipes holds.
type runReader struct {
	pid        int
	start, end uint64
	short      int
}

func (r runReader) ReadPages(pid int, vaddr uint64, buf []byte) (int, error) {
	if pid != r.pid || vaddr < r.start || vaddr >= r.end {
		return 0, fmt.Errorf("%#x of pid %d is not lazy", vaddr, pid)
	}
	n := min(uint64(len(buf)), r.end-vaddr)
	if r.short > 0 {
		n = min(n, uint64(r.short))
	}
	for i := uint64(0); i < n; i += PageSize {
		copy(buf[i:i+PageSize], bytes.Repeat([]byte{byte((vaddr + i) >> 12)}, PageSize))
	}
	return int(n), nil
}

func pattern(vaddr uint64, n int) []byte {
	var b []byte
	for i := 0; i < n; i += PageSize {
		b = append(b, bytes.Repeat([]byte{byte((vaddr + uint64(i)) >> 12)}, PageSize)...)
	}
	return b
}

// serveLazyPipe runs ServeLazy for src on one end of a pipe and returns
// a Source on the other and the server's result.
func serveLazyPipe(t *testing.T, src PageReader) (*Source, <-chan error) {
	t.Helper()
	a, b := net.Pipe()
	done := make(chan error, 1)
	go func() {
		_, err := ServeLazy(b, src, nil)
		b.Close()
		done <- err
	}()
	return NewSource(a, "pipe"), done
}

// TestLazyFetch fetches pages across short answers and more than one
// answer's worth, then ends the session.
func TestLazyFetch(t *testing.T) {
	const base = 0x7f0000000000
	src := runReader{pid: 42, start: base, end: base + 2*maxGet, short: 3 * PageSize}
	s, done := serveLazyPipe(t, src)
	for _, c := range []struct {
		at   uint64
		size int
	}{{base, PageSize}, {base + PageSize, 7 * PageSize}, {base + 16*PageSize, maxGet}} {
		buf := make([]byte, c.size)
		if err := s.Fetch(42, c.at, buf); err != nil {
			t.Fatalf("Fetch %#x+%d: %v", c.at, c.size, err)
		}
		if !bytes.Equal(buf, pattern(c.at, c.size)) {
			t.Errorf("Fetch %#x+%d: wrong contents", c.at, c.size)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := <-done; err != nil {
		t.Errorf("ServeLazy: %v", err)
	}
	if err := s.Fetch(42, base, make([]byte, PageSize)); err == nil {
		t.Error("Fetch after Close succeeded")
	}
}

// TestLazyNotLazy: a GET of pages the dump did not leave lazy fails the
// session on both sides, and every later Fetch too.
func TestLazyNotLazy(t *testing.T) {
	s, done := serveLazyPipe(t, runReader{pid: 42, start: 0x1000, end: 0x3000})
	if err := s.Fetch(43, 0x1000, make([]byte, PageSize)); err == nil {
		t.Fatal("Fetch of another process's pages succeeded")
	}
	if err := <-done; err == nil || !bytes.Contains([]byte(err.Error()), []byte("not lazy")) {
		t.Errorf("ServeLazy = %v, want the reader's error", err)
	}
	if err := s.Fetch(42, 0x1000, make([]byte, PageSize)); err == nil {
		t.Error("Fetch after a failed one succeeded")
	}
}

// TestLazyDaemonGone: a daemon that closes the connection without CLOSE
// fails the session with ErrLazyNotClosed.
func TestLazyDaemonGone(t *testing.T) {
	s, done := serveLazyPipe(t, runReader{pid: 1, start: 0x1000, end: 0x3000})
	if err := s.Fetch(1, 0x1000, make([]byte, PageSize)); err != nil {
		t.Fatal(err)
	}
	s.Abort()
	if err := <-done; !errors.Is(err, ErrLazyNotClosed) {
		t.Errorf("ServeLazy = %v, want ErrLazyNotClosed", err)
	}
}

// TestLazyWire checks the bytes of a GET and of its answer against the
// layout of CRIU's struct page_server_iov: the GET names the process by
// its plain PID, and the answer is an ADD_F flagged PE_PRESENT.
func TestLazyWire(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	go func() {
		s := NewSource(b, "pipe")
		s.Fetch(77, 0x400000, make([]byte, 2*PageSize))
		s.Abort()
	}()
	var get [RequestSize]byte
	if _, err := io.ReadFull(a, get[:]); err != nil {
		t.Fatal(err)
	}
	want := make([]byte, RequestSize)
	binary.LittleEndian.PutUint32(want[0:], 7)
	binary.LittleEndian.PutUint64(want[8:], 2)
	binary.LittleEndian.PutUint64(want[16:], 0x400000)
	binary.LittleEndian.PutUint64(want[24:], 77)
	if !bytes.Equal(get[:], want) {
		t.Errorf("GET on the wire\n%x, want\n%x", get, want)
	}
	var ans bytes.Buffer
	if err := answerGet(&ans, ParseRequest(get[:]), make([]byte, PageSize)); err != nil {
		t.Fatal(err)
	}
	binary.LittleEndian.PutUint32(want[0:], 6|4<<16)
	binary.LittleEndian.PutUint64(want[8:], 1)
	if !bytes.Equal(ans.Bytes()[:RequestSize], want) || ans.Len() != RequestSize+PageSize {
		t.Errorf("answer on the wire\n%x, want\n%x and a page", ans.Bytes()[:RequestSize], want)
	}
}

// TestSourceAbortInFlight aborts a session while a fetch waits on a
// server that never answers, with no timeout: the fetch fails and Abort
// returns, where Abort waited for the fetch's lock forever.
func TestSourceAbortInFlight(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	src := NewSource(a, "pipe")
	fetched := make(chan error, 1)
	go func() { fetched <- src.Fetch(1, 0x1000, make([]byte, PageSize)) }()
	// The request arrived: the fetch now waits for its answer.
	if _, err := io.ReadFull(b, make([]byte, RequestSize)); err != nil {
		t.Fatal(err)
	}
	aborted := make(chan struct{})
	go func() { src.Abort(); close(aborted) }()
	for _, c := range []struct {
		what string
		done func() bool
	}{
		{"Abort", func() bool { <-aborted; return true }},
		{"the fetch", func() bool { return <-fetched != nil }},
	} {
		ok := make(chan bool, 1)
		go func() { ok <- c.done() }()
		select {
		case good := <-ok:
			if !good {
				t.Fatalf("%s succeeded after the abort", c.what)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%s still waits 30 s after the abort", c.what)
		}
	}
	if err := src.Fetch(1, 0x1000, make([]byte, PageSize)); err == nil {
		t.Fatal("a fetch after the abort succeeded")
	}
}
