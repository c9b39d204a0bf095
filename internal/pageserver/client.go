package pageserver

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Client is a dump's connection to a page server. Requests and small
// page runs are buffered; large runs go out with what is buffered in one
// writev, without a copy. Not safe for concurrent use.
type Client struct {
	conn io.ReadWriteCloser
	addr string
	w    *batch
	req  [RequestSize]byte
	cur  Dest // the destination opened last
	// timeout bounds each request's exchange on a connection that takes
	// deadlines: a server that stops reading or answering fails the dump
	// instead of keeping its tree frozen. Zero: no bound.
	timeout time.Duration
}

// deadliner is a connection that takes deadlines (a net.Conn).
type deadliner interface{ SetDeadline(time.Time) error }

// clientBuffer batches the requests and small page runs between the
// syscalls that send them.
const clientBuffer = 256 << 10

// loopbackSendBuffer is the send buffer (SO_SNDBUF, which the kernel
// doubles) of a dump to a page server on the same machine. There the
// server copies the pages out of the kernel's buffers on the same CPUs,
// and the fewer of them wait, the more are still in the cache: with
// the kernel's sizing (up to 4 MiB) the server's CPU time for 1 GiB
// varied from 0.3 to 1.3 s from run to run, with 512 KiB it stayed at
// 0.25-0.3 s and the dump took 0.6-0.8 s instead of 0.7-1.8 s. Over a
// real link, the buffer must cover its bandwidth times its delay, which
// only the kernel knows.
const loopbackSendBuffer = 512 << 10

// directWrite is the size from which a write is not copied into the
// batch but sent from where it is, with the batch before it: copying
// 1 GiB of pages into the buffer first took a tenth of a dump's CPU.
const directWrite = 16 << 10

// batch buffers small writes to conn and sends large ones directly, in
// the order they came.
type batch struct {
	conn io.Writer
	buf  []byte // what is buffered, at most clientBuffer bytes
}

// Write buffers p, or sends what is buffered and p in one call.
func (b *batch) Write(p []byte) (int, error) {
	if len(p) < directWrite {
		if len(b.buf)+len(p) > cap(b.buf) {
			if err := b.Flush(); err != nil {
				return 0, err
			}
		}
		b.buf = append(b.buf, p...)
		return len(p), nil
	}
	// A TCP connection sends both with one writev.
	pending := len(b.buf)
	v := net.Buffers{b.buf, p}
	n, err := v.WriteTo(b.conn)
	b.buf = b.buf[:0]
	if err != nil {
		return max(0, int(n)-pending), err
	}
	return len(p), nil
}

// Flush sends what is buffered.
func (b *batch) Flush() error {
	if len(b.buf) == 0 {
		return nil
	}
	_, err := b.conn.Write(b.buf)
	b.buf = b.buf[:0]
	return err
}

// Dial connects to the page server at addr (host:port). The connection,
// and then each request's exchange, may take at most timeout (zero: no
// bound). To a server on this machine, the send buffer is
// loopbackSendBuffer; otherwise the kernel sizes the buffers.
func Dial(addr string, timeout time.Duration) (*Client, error) {
	conn, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, fmt.Errorf("page server %s: %w", addr, err)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		if a, ok := tc.RemoteAddr().(*net.TCPAddr); ok && a.IP.IsLoopback() {
			tc.SetWriteBuffer(loopbackSendBuffer)
		}
	}
	c := NewClient(conn, addr)
	c.timeout = timeout
	return c, nil
}

// NewClient speaks the protocol on conn, a connection to the page server
// at addr (which errors name).
func NewClient(conn io.ReadWriteCloser, addr string) *Client {
	return &Client{conn: conn, addr: addr, w: &batch{conn: conn, buf: make([]byte, 0, clientBuffer)}}
}

// send buffers one request.
func (c *Client) send(r Request) error {
	if d, ok := c.conn.(deadliner); ok && c.timeout > 0 {
		if err := d.SetDeadline(time.Now().Add(c.timeout)); err != nil {
			return c.fail(r, err)
		}
	}
	r.Marshal(c.req[:])
	if _, err := c.w.Write(c.req[:]); err != nil {
		return c.fail(r, err)
	}
	return nil
}

// fail wraps an error of request r.
func (c *Client) fail(r Request, err error) error {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		err = fmt.Errorf("no progress in %v (--timeout): %w", c.timeout, err)
	}
	return fmt.Errorf("page server %s: %s: %w", c.addr, cmdName(r.Cmd), err)
}

// ask sends request r and reads its answer into answer.
func (c *Client) ask(r Request, answer []byte) error {
	if err := c.send(r); err != nil {
		return err
	}
	if err := c.w.Flush(); err != nil {
		return c.fail(r, err)
	}
	if _, err := io.ReadFull(c.conn, answer); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			err = errors.New("the server closed the connection without answering (see its log)")
		}
		return c.fail(r, err)
	}
	return nil
}

// Open starts the pages of d (OPEN2): every Add and Hole after it goes
// to d's pagemap. It reports whether the server has parent images for d,
// to which Hole may leave pages.
func (c *Client) Open(d Dest) (hasParent bool, err error) {
	var b [1]byte
	if err := c.ask(Request{Cmd: CmdOpen2, Dest: d.Encode()}, b[:]); err != nil {
		return false, err
	}
	c.cur = d
	return b[0] != 0, nil
}

// OpenTask is Open for the private memory of process pid.
func (c *Client) OpenTask(pid int) (hasParent bool, err error) { return c.Open(TaskDest(pid)) }

// HasParent asks whether the server has parent images for d (PARENT),
// without opening it.
func (c *Client) HasParent(d Dest) (bool, error) {
	var b [4]byte
	if err := c.ask(Request{Cmd: CmdParent, Dest: d.Encode()}, b[:]); err != nil {
		return false, err
	}
	return int32(binary.LittleEndian.Uint32(b[:])) > 0, nil
}

// Add sends the contents of the pages at vaddr, whole pages, to the
// destination opened last.
func (c *Client) Add(vaddr uint64, pages []byte) error {
	r := Request{Cmd: CmdAddF, Flags: FlagPresent, NrPages: uint64(len(pages)) / PageSize, Vaddr: vaddr, Dest: c.cur.Encode()}
	if len(pages)%PageSize != 0 || len(pages) == 0 {
		return c.fail(r, fmt.Errorf("%d bytes at %#x: not whole pages", len(pages), vaddr))
	}
	if err := c.send(r); err != nil {
		return err
	}
	if _, err := c.w.Write(pages); err != nil {
		return c.fail(r, err)
	}
	return nil
}

// AddFromPipe sends the contents of n bytes of whole pages at vaddr,
// the next n bytes of pipe (a blocking descriptor), to the destination
// opened last. A TCP connection takes them with splice: the socket
// refers to the pages the pipe refers to, without copying them.
func (c *Client) AddFromPipe(vaddr uint64, pipe int, n uint64) error {
	r := Request{Cmd: CmdAddF, Flags: FlagPresent, NrPages: n / PageSize, Vaddr: vaddr, Dest: c.cur.Encode()}
	if n%PageSize != 0 || n == 0 {
		return c.fail(r, fmt.Errorf("%d bytes at %#x: not whole pages", n, vaddr))
	}
	if err := c.send(r); err != nil {
		return err
	}
	if err := c.w.Flush(); err != nil {
		return c.fail(r, err)
	}
	if err := c.fromPipe(pipe, n); err != nil {
		return c.fail(r, err)
	}
	return nil
}

// fromPipe moves n bytes from pipe to the connection: spliced into a
// connection with a descriptor, else read and written.
func (c *Client) fromPipe(pipe int, n uint64) error {
	sc, ok := c.conn.(syscall.Conn)
	if !ok {
		return c.copyFromPipe(pipe, n)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	werr := raw.Write(func(fd uintptr) bool {
		for n > 0 {
			// Without SPLICE_F_NONBLOCK: a pipe still being filled is
			// waited for, and EAGAIN comes only from the socket, full,
			// whose writability the runtime then waits for.
			m, err := unix.Splice(pipe, nil, int(fd), nil, int(n), unix.SPLICE_F_MOVE|unix.SPLICE_F_MORE)
			switch {
			case err == unix.EAGAIN:
				return false
			case err == unix.EINTR:
				continue
			case err != nil:
				serr = fmt.Errorf("splice: %w", err)
				return true
			case m == 0:
				serr = io.ErrUnexpectedEOF
				return true
			}
			n -= uint64(m)
		}
		return true
	})
	return errors.Join(werr, serr)
}

// copyFromPipe reads n bytes from pipe and sends them.
func (c *Client) copyFromPipe(pipe int, n uint64) error {
	buf := make([]byte, min(n, clientBuffer))
	for n > 0 {
		m, err := unix.Read(pipe, buf[:min(n, uint64(len(buf)))])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("read pipe: %w", err)
		}
		if m == 0 {
			return io.ErrUnexpectedEOF
		}
		if _, err := c.w.Write(buf[:m]); err != nil {
			return err
		}
		n -= uint64(m)
	}
	return nil
}

// Hole records nrPages pages at vaddr of the destination opened last as
// left to its parent images.
func (c *Client) Hole(vaddr, nrPages uint64) error {
	return c.send(Request{Cmd: CmdAddF, Flags: FlagParent, NrPages: nrPages, Vaddr: vaddr, Dest: c.cur.Encode()})
}

// Lazy records nrPages pages at vaddr of the destination opened last as
// left at the source (PE_LAZY), for a lazy restore to fetch.
func (c *Client) Lazy(vaddr, nrPages uint64) error {
	return c.send(Request{Cmd: CmdAddF, Flags: FlagLazy, NrPages: nrPages, Vaddr: vaddr, Dest: c.cur.Encode()})
}

// Close ends the session (CLOSE): once it returns without error the
// server has written every page, and the connection is closed.
func (c *Client) Close() error {
	defer c.conn.Close()
	var b [4]byte
	if err := c.ask(Request{Cmd: CmdClose}, b[:]); err != nil {
		return err
	}
	if status := int32(binary.LittleEndian.Uint32(b[:])); status != 0 {
		return c.fail(Request{Cmd: CmdClose}, fmt.Errorf("the server answered status %d", status))
	}
	return nil
}

// Abort drops the connection without ending the session: the server
// then knows the dump failed.
func (c *Client) Abort() error { return c.conn.Close() }

// Addr is the server's address.
func (c *Client) Addr() string { return c.addr }
