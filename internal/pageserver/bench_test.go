package pageserver

import (
	"bytes"
	"io"
	"net"
	"testing"

	"amber/internal/image"
)

// BenchmarkServeScattered times Serve taking a session of single pages
// apart from each other, as the final dump of a process writing at
// random sends them, the whole stream there at once: the server's cost
// per request.
func BenchmarkServeScattered(b *testing.B) {
	benchmarkServe(b, 2000, 1, 2)
}

// BenchmarkServeBulk is BenchmarkServeScattered with runs of 1 MiB one
// after the other, as a dump of a process's memory sends them.
func BenchmarkServeBulk(b *testing.B) {
	benchmarkServe(b, 64, 256, 256)
}

// benchmarkServe times Serve taking n runs of size pages, each step
// pages after the one before, the whole stream there at once, and
// reports the time per page.
func benchmarkServe(b *testing.B, n, size, step uint64) {
	var stream bytes.Buffer
	// The client's session, recorded: the server's answers to OPEN2 and
	// CLOSE given up front.
	c := NewClient(&fakeConn{r: bytes.NewReader(make([]byte, 5)), w: &stream}, "recorded")
	if _, err := c.OpenTask(1); err != nil {
		b.Fatal(err)
	}
	run := pages(1, int(size))
	for i := range n {
		if err := c.Add(0x10000000+step*i*PageSize, run); err != nil {
			b.Fatal(err)
		}
	}
	if err := c.Close(); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		d, err := image.OpenDir(b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			conn, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				done <- err
				return
			}
			conn.Write(stream.Bytes())
			io.Copy(io.Discard, io.LimitReader(conn, 5))
			conn.Close()
			done <- nil
		}()
		conn, err := ln.Accept()
		if err != nil {
			b.Fatal(err)
		}
		if _, err := Serve(conn, d, nil); err != nil {
			b.Fatal(err)
		}
		conn.Close()
		ln.Close()
		d.Close()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n*size), "ns/page")
}
