package progress

import (
	"strings"
	"testing"
	"time"
)

func TestBarLine(t *testing.T) {
	var out strings.Builder
	now := time.Unix(0, 0)
	clock := func() time.Time { return now }
	b := newBar(&out, "restore", 1024<<20, clock)
	now = now.Add(time.Second)
	b.Set(512 << 20)
	want := "\rrestore [===============               ] 512/1024 MiB 512 MiB/s 1.0s left"
	if out.String() != want {
		t.Fatalf("got %q, want %q", out.String(), want)
	}
	b.Set(600 << 20) // too soon to redraw
	if out.String() != want {
		t.Fatalf("redrew within %v: %q", redraw, out.String())
	}
	now = now.Add(time.Second)
	b.Done()
	if !strings.HasSuffix(out.String(), "1024/1024 MiB 512 MiB/s 0.0s left\n") {
		t.Fatalf("done line: %q", out.String())
	}
}

func TestNilBar(t *testing.T) {
	var b *Bar
	b.Set(1)
	b.Done()
}

func TestNewSkipsSmallWork(t *testing.T) {
	if New("dump", MinBytes-1) != nil {
		t.Fatal("a bar for work below MinBytes")
	}
}
