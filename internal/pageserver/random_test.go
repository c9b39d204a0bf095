package pageserver

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"amber/internal/image"
)

// streamSeedEnv names the seed of TestServeRandomStreams's third
// stream, drawn anew each run otherwise.
const streamSeedEnv = "AMBER_PAGESERVER_SEED"

// TestServeRandomStreams sends random streams of runs (one page to more
// than a pipe's worth, some continuing the run before, some lazy, some
// from a pipe, for two processes) through Client to Serve, over TCP on
// loopback (spliced from the pipes, and into the pages image by the
// writers) and over an in-memory pipe (read and written), and checks
// each pagemap and pages image against what was sent.
func TestServeRandomStreams(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv(streamSeedEnv); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 0, 64); err != nil {
			t.Fatalf("%s=%q: %v", streamSeedEnv, s, err)
		}
	}
	for _, tc := range []struct {
		name string
		seed uint64
	}{{"seed=1", 1}, {"seed=2", 2}, {fmt.Sprintf("seed=%d", seed), seed}} {
		for _, tcp := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/tcp=%v", tc.name, tcp), func(t *testing.T) {
				t.Logf("replay with %s=%d", streamSeedEnv, tc.seed)
				checkRandomStream(t, rand.New(rand.NewPCG(tc.seed, 3)), tcp, false)
			})
		}
	}
}

// TestServeScatteredStreams is TestServeRandomStreams with streams of
// hundreds of runs of one to four pages (a final dump's of a process
// writing at random) among a few of hundreds: they come through the
// server's read buffer, written more than a megabyte at a time, around
// the larger runs, spliced.
func TestServeScatteredStreams(t *testing.T) {
	for _, seed := range []uint64{4, 5} {
		for _, tcp := range []bool{true, false} {
			t.Run(fmt.Sprintf("seed=%d/tcp=%v", seed, tcp), func(t *testing.T) {
				checkRandomStream(t, rand.New(rand.NewPCG(seed, 3)), tcp, true)
			})
		}
	}
}

// streamDest is what a random stream sent one process: its entries as
// a page server writes them (continuing runs joined) and its pages.
type streamDest struct {
	pid     int
	entries []string
	pages   []byte
	end     uint64 // where the last run ended
	flags   uint32 // the flags of the last run
	last    int    // the index of the last entry, -1 before any
	vaddr   uint64 // the last entry's start and pages
	nr      uint64
}

// add records n pages at vaddr with flags, and their contents.
func (d *streamDest) add(vaddr, n uint64, flags uint32, b []byte) {
	if d.last >= 0 && vaddr == d.end && flags == d.flags {
		d.nr += n
	} else {
		d.entries = append(d.entries, "")
		d.last, d.vaddr, d.nr = len(d.entries)-1, vaddr, n
	}
	d.entries[d.last] = formatEntry(d.vaddr, d.nr, flags)
	d.end, d.flags = vaddr+n*PageSize, flags
	d.pages = append(d.pages, b...)
}

// checkRandomStream runs one random session, of mostly small runs if
// scattered, and checks what it wrote.
func checkRandomStream(t *testing.T, rnd *rand.Rand, tcp, scattered bool) {
	dir := t.TempDir()
	dests := []*streamDest{{pid: 10, last: -1}, {pid: 11, last: -1}}
	client := func(c *Client) error {
		for _, d := range dests {
			if _, err := c.OpenTask(d.pid); err != nil {
				return err
			}
			addr := uint64(0x7f00_0000_0000)
			runs := 30 + rnd.IntN(60)
			if scattered {
				runs = 400 + rnd.IntN(400)
			}
			for range runs {
				if rnd.IntN(3) > 0 {
					addr += uint64(1+rnd.IntN(64)) * PageSize
				}
				n := uint64(1 + rnd.IntN(1+rnd.IntN(600)))
				if scattered && rnd.IntN(20) > 0 {
					n = uint64(1 + rnd.IntN(4))
				}
				if rnd.IntN(5) == 0 {
					if err := c.Lazy(addr, n); err != nil {
						return err
					}
					d.add(addr, n, FlagLazy, nil)
				} else {
					b := make([]byte, n*PageSize)
					for i := 0; i < len(b); i += 8 {
						binary.LittleEndian.PutUint64(b[i:], rnd.Uint64())
					}
					add := c.Add
					if rnd.IntN(2) == 0 {
						add = func(vaddr uint64, b []byte) error { return addFromPipe(c, vaddr, b) }
					}
					if err := add(addr, b); err != nil {
						return err
					}
					d.add(addr, n, FlagPresent, b)
				}
				addr += n * PageSize
			}
		}
		return c.Close()
	}
	var err error
	if tcp {
		_, err = tcpSession(t, dir, client)
	} else {
		_, err = session(t, dir, client)
	}
	if err != nil {
		t.Fatal(err)
	}
	d, err := image.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for i, want := range dests {
		id := FirstPagesID + uint32(i)
		requirePagemap(t, dir, want.pid, id, joinEntries(want.entries))
		got, err := os.ReadFile(d.PagesPath(id).String())
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want.pages) {
			t.Fatalf("pages of %d: %d bytes, want %d", want.pid, len(got), len(want.pages))
		}
		for off := 0; off < len(got); off += PageSize {
			if !bytes.Equal(got[off:off+PageSize], want.pages[off:off+PageSize]) {
				t.Fatalf("pages of %d: page %d differs from the one sent", want.pid, off/PageSize)
			}
		}
	}
}

// addFromPipe sends b at vaddr from a pipe (Client.AddFromPipe),
// which a goroutine fills as the client empties it.
func addFromPipe(c *Client, vaddr uint64, b []byte) error {
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	wrote := make(chan error, 1)
	go func() {
		_, err := w.Write(b)
		w.Close()
		wrote <- err
	}()
	// The raw descriptor, as a dump's pipes are: the client blocks on
	// it rather than the runtime's poller.
	rc, err := r.SyscallConn()
	if err != nil {
		return err
	}
	var aerr error
	if err := rc.Control(func(fd uintptr) {
		if err := unix.SetNonblock(int(fd), false); err != nil {
			aerr = err
			return
		}
		aerr = c.AddFromPipe(vaddr, int(fd), uint64(len(b)))
	}); err != nil {
		return err
	}
	return errors.Join(aerr, <-wrote)
}

func joinEntries(entries []string) string {
	var b bytes.Buffer
	for i, e := range entries {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(e)
	}
	return b.String()
}

// tcpSession is session over a TCP connection on loopback.
func tcpSession(t *testing.T, dir string, client func(c *Client) error) (Stats, error) {
	t.Helper()
	d, err := image.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		st  Stats
		err error
	}
	done := make(chan result, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			done <- result{err: err}
			return
		}
		defer conn.Close()
		st, err := Serve(conn, d, nil)
		done <- result{st, err}
	}()
	c, err := Dial(ln.Addr().String(), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := client(c); err != nil {
		c.Abort()
		<-done
		t.Fatalf("client: %v", err)
	}
	r := <-done
	return r.st, r.err
}
