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
	const n = 2000
	var stream bytes.Buffer
	// The client's session, recorded: the server's answers to OPEN2 and
	// CLOSE given up front.
	c := NewClient(&fakeConn{r: bytes.NewReader(make([]byte, 5)), w: &stream}, "recorded")
	if _, err := c.OpenTask(1); err != nil {
		b.Fatal(err)
	}
	page := pages(1, 1)
	for i := range uint64(n) {
		if err := c.Add(0x10000000+2*i*PageSize, page); err != nil {
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
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/page")
}
