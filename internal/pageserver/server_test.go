package pageserver

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"amber/internal/image"
	"amber/internal/mem"
)

// fakeConn is a connection whose reads and writes go to buffers.
type fakeConn struct {
	r io.Reader
	w io.Writer
}

func (f *fakeConn) Read(b []byte) (int, error)  { return f.r.Read(b) }
func (f *fakeConn) Write(b []byte) (int, error) { return f.w.Write(b) }
func (f *fakeConn) Close() error                { return nil }

// session runs a client session against Serve into dir, over a socket
// pair, and returns what Serve returned.
func session(t *testing.T, dir string, client func(c *Client) error) (Stats, error) {
	t.Helper()
	d, err := image.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	a, b := net.Pipe()
	type result struct {
		st  Stats
		err error
	}
	done := make(chan result, 1)
	go func() {
		st, err := Serve(b, d, nil)
		b.Close()
		done <- result{st, err}
	}()
	c := NewClient(a, "pipe")
	if err := client(c); err != nil {
		a.Close()
		<-done
		t.Fatalf("client: %v", err)
	}
	r := <-done
	return r.st, r.err
}

// pages returns n pages, each filled with its own byte from first.
func pages(first byte, n int) []byte {
	var b []byte
	for i := range n {
		b = append(b, bytes.Repeat([]byte{first + byte(i)}, PageSize)...)
	}
	return b
}

// TestServeWritesImages: the pages of two processes, sent in runs that
// continue one another, become one pagemap entry per run and pages images
// numbered from FirstPagesID, holding the pages in order.
func TestServeWritesImages(t *testing.T) {
	dir := t.TempDir()
	st, err := session(t, dir, func(c *Client) error {
		if parent, err := c.OpenTask(10); err != nil || parent {
			t.Fatalf("open: parent %v, %v", parent, err)
		}
		for _, step := range []struct {
			addr uint64
			b    []byte
		}{{0x10000, pages(1, 2)}, {0x12000, pages(3, 1)}, {0x20000, pages(9, 1)}} {
			if err := c.Add(step.addr, step.b); err != nil {
				return err
			}
		}
		if _, err := c.OpenTask(11); err != nil {
			return err
		}
		if err := c.Add(0x5000, pages(7, 1)); err != nil {
			return err
		}
		return c.Close()
	})
	if err != nil {
		t.Fatal(err)
	}
	if st.Dests != 2 || st.Pages != 5 {
		t.Fatalf("stats %+v", st)
	}
	requirePagemap(t, dir, 10, FirstPagesID, "10000+3/4 20000+1/4")
	requirePagemap(t, dir, 11, FirstPagesID+1, "5000+1/4")
	got, err := os.ReadFile(filepath.Join(dir, "pages-65537.img"))
	if err != nil {
		t.Fatal(err)
	}
	if want := append(pages(1, 3), pages(9, 1)...); !bytes.Equal(got, want) {
		t.Fatal("pages-65537.img does not hold the pages sent, in order")
	}
}

// requirePagemap requires that pid's pagemap in dir names pages image id
// and has the entries want ("VADDR+N/FLAGS ...").
func requirePagemap(t *testing.T, dir string, pid int, id uint32, want string) {
	t.Helper()
	d, err := image.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	head, entries, err := mem.ReadPagemap(d.PagemapPath(pid))
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	for i, e := range entries {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(formatEntry(e.GetVaddr(), mem.NrPages(e), e.GetFlags()))
	}
	if head.GetPagesId() != id || b.String() != want {
		t.Fatalf("pagemap of %d: pages %d, %s; want pages %d, %s", pid, head.GetPagesId(), b.String(), id, want)
	}
}

func formatEntry(vaddr, n uint64, flags uint32) string {
	return fmt.Sprintf("%x+%d/%d", vaddr, n, flags)
}

// TestServeParent: with a parent link to images that hold a process's
// pagemap, OPEN2 and PARENT answer yes, holes inside the parent's pages
// are recorded in-parent, and a hole outside them fails the session,
// which removes what it wrote.
func TestServeParent(t *testing.T) {
	root := t.TempDir()
	prev, cur := filepath.Join(root, "pre"), filepath.Join(root, "cur")
	for _, d := range []string{prev, cur} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := session(t, prev, func(c *Client) error {
		if _, err := c.OpenTask(10); err != nil {
			return err
		}
		if err := c.Add(0x10000, pages(1, 4)); err != nil {
			return err
		}
		return c.Close()
	}); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../pre", filepath.Join(cur, image.ParentLink)); err != nil {
		t.Fatal(err)
	}
	st, err := session(t, cur, func(c *Client) error {
		if parent, err := c.HasParent(TaskDest(11)); err != nil || parent {
			t.Fatalf("PARENT of pid 11: %v, %v; want none", parent, err)
		}
		if parent, err := c.OpenTask(10); err != nil || !parent {
			t.Fatalf("OPEN2 of pid 10: %v, %v; want a parent", parent, err)
		}
		if err := c.Hole(0x10000, 2); err != nil {
			return err
		}
		if err := c.Add(0x12000, pages(5, 1)); err != nil {
			return err
		}
		if err := c.Hole(0x13000, 1); err != nil {
			return err
		}
		return c.Close()
	})
	if err != nil || st.Holes != 3 {
		t.Fatalf("holes %d, %v", st.Holes, err)
	}
	requirePagemap(t, cur, 10, FirstPagesID, "10000+2/1 12000+1/4 13000+1/1")

	_, err = session(t, cur, func(c *Client) error {
		if _, err := c.OpenTask(10); err != nil {
			return err
		}
		if err := c.Hole(0x13000, 2); err != nil {
			return err
		}
		c.Close() // the server fails first
		return nil
	})
	if err == nil {
		t.Fatal("a hole past the parent's pages was taken")
	}
	if _, serr := os.Stat(filepath.Join(cur, "pagemap-10.img")); !errors.Is(serr, os.ErrNotExist) {
		t.Fatalf("failed session left its pagemap (%v); error was %v", serr, err)
	}
}

// TestServeNotClosed: a client that goes away without CLOSE failed its
// dump: Serve says so and removes the images of the session.
func TestServeNotClosed(t *testing.T) {
	dir := t.TempDir()
	_, err := session(t, dir, func(c *Client) error {
		if _, err := c.OpenTask(10); err != nil {
			return err
		}
		if err := c.Add(0x10000, pages(1, 1)); err != nil {
			return err
		}
		if err := c.w.Flush(); err != nil {
			return err
		}
		return c.Abort()
	})
	if !errors.Is(err, ErrNotClosed) {
		t.Fatalf("Serve: %v, want ErrNotClosed", err)
	}
	names, _ := os.ReadDir(dir)
	if len(names) != 0 {
		t.Fatalf("failed session left %v", names)
	}
}

// TestServeTruncatedPages: the connection closes in the middle of the
// pages of a request.
func TestServeTruncatedPages(t *testing.T) {
	dir := t.TempDir()
	_, err := session(t, dir, func(c *Client) error {
		if _, err := c.OpenTask(10); err != nil {
			return err
		}
		var b [RequestSize]byte
		Request{Cmd: CmdAddF, Flags: FlagPresent, NrPages: 4, Vaddr: 0x1000, Dest: TaskDest(10).Encode()}.Marshal(b[:])
		c.w.Write(b[:])
		c.w.Write(pages(1, 1))
		c.w.Flush()
		return c.Abort()
	})
	if err == nil || errors.Is(err, ErrNotClosed) {
		t.Fatalf("Serve: %v, want an error about the pages", err)
	}
	t.Log(err)
}

// TestServeUnknownCommand names the command it does not know.
func TestServeUnknownCommand(t *testing.T) {
	dir := t.TempDir()
	_, err := session(t, dir, func(c *Client) error {
		c.send(Request{Cmd: 0x77})
		c.w.Flush()
		io.Copy(io.Discard, c.conn)
		return c.Abort()
	})
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("command 0x77")) {
		t.Fatalf("Serve: %v, want an error naming command 0x77", err)
	}
}

// TestServeLegacyDest: a client of CRIU before 3.3 sends its image
// number (11) as the destination type, and ADD without opening first:
// the pages go to one pagemap all the same.
func TestServeLegacyDest(t *testing.T) {
	dir := t.TempDir()
	_, err := session(t, dir, func(c *Client) error {
		for _, addr := range []uint64{0x1000, 0x2000} {
			if err := c.send(Request{Cmd: CmdAdd, NrPages: 1, Vaddr: addr, Dest: 10<<8 | 11}); err != nil {
				return err
			}
			if _, err := c.w.Write(pages(1, 1)); err != nil {
				return err
			}
		}
		return c.Close()
	})
	if err != nil {
		t.Fatal(err)
	}
	requirePagemap(t, dir, 10, FirstPagesID, "1000+2/4")
}

// sharedConn is a client's side of a shared connection: closing it, as
// Client.Close does, leaves the connection open for the next session.
type sharedConn struct{ net.Conn }

func (sharedConn) Close() error { return nil }

// TestServeShared: sessions one after the other on one connection, each
// into its own directory, as go-criu's phaul sends its pre-dumps over
// ps.fd: ServeShared returns once it answered the end of a session,
// without the connection closing, and the next session on it writes the
// next directory; Serve, given the same, would wait for the close.
func TestServeShared(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	for i := range 3 {
		dir := t.TempDir()
		d, err := image.OpenDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			_, err := ServeShared(b, d, nil)
			done <- err
		}()
		c := NewClient(sharedConn{a}, "pipe")
		if _, err := c.OpenTask(10); err != nil {
			t.Fatal(err)
		}
		if err := c.Add(0x10000, pages(byte(10*i), 2)); err != nil {
			t.Fatal(err)
		}
		if err := c.Close(); err != nil {
			t.Fatalf("session %d: %v", i, err)
		}
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("session %d: %v", i, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("session %d: ServeShared did not return once it answered the close", i)
		}
		d.Close()
		requirePagemap(t, dir, 10, FirstPagesID, "10000+2/4")
		if got, err := os.ReadFile(filepath.Join(dir, "pages-65537.img")); err != nil || !bytes.Equal(got, pages(byte(10*i), 2)) {
			t.Fatalf("session %d: its pages image does not hold its pages (%v)", i, err)
		}
	}
}
