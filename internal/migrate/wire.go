package migrate

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"
)

// Version is the protocol's version, sent in hello and checked by both
// sides.
const Version = 3

// maxLine bounds one control message: a peer that sends an endless line
// fails the session instead of filling amber's memory.
const maxLine = 64 << 10

// Msg is one control message; Op says which, the other fields are its
// arguments (unset ones are left out of the line).
type Msg struct {
	Op string `json:"op"`

	Version int    `json:"version,omitempty"`
	BootID  string `json:"boot_id,omitempty"` // the host's /proc/sys/kernel/random/boot_id
	Dir     string `json:"dir,omitempty"`     // hello's answer: the destination's images dir; pages: the chain's dir
	Parent  string `json:"parent,omitempty"`  // pages: the dir before in the chain
	Name    string `json:"name,omitempty"`    // file: the image's name
	Size    int64  `json:"size,omitempty"`    // file: bytes that follow the line
	Pages   uint64 `json:"pages,omitempty"`   // pages' answer: pages received
	Error   string `json:"error,omitempty"`   // error: what failed

	// restore: hand over as on one host.
	SameHost bool `json:"same_host,omitempty"`
	// restore: restore lazily, with pages fetched from the source on a
	// connection it opens next (see lazy.go).
	Lazy bool `json:"lazy,omitempty"`
	// restore: restore lazily with every page in the images received,
	// filled after the resume (held.go); with Lazy.
	Local bool `json:"local,omitempty"`
	// The answer once a lazy restore (or a held one) has every page: how
	// long after the resumption.
	AllInNs int64 `json:"all_in_ns,omitempty"`
	// hello: the dump's settings, which the restore mirrors.
	ShellJob       bool `json:"shell_job,omitempty"`
	TCPEstablished bool `json:"tcp_established,omitempty"`
	TCPClose       bool `json:"tcp_close,omitempty"`
	FileLocks      bool `json:"file_locks,omitempty"`

	// The restore's answer: the destination's wall clock when the tree
	// ran again (Unix nanoseconds) and how long the restore took, from
	// the request (or the commit) to then.
	ResumedAt int64 `json:"resumed_at,omitempty"`
	RestoreNs int64 `json:"restore_ns,omitempty"`
	Pid       int   `json:"pid,omitempty"` // the restored root
}

// Ops of Msg.
const (
	opHello    = "hello"
	opOK       = "ok"
	opError    = "error"
	opPages    = "pages"
	opFile     = "file"
	opEndFiles = "end-files"
	opRestore  = "restore"
	opCommit   = "commit"
	opDone     = "done"
)

// RemoteError is an error the peer reported.
type RemoteError struct{ Msg string }

func (e *RemoteError) Error() string { return "the other side: " + e.Msg }

// ErrClosed is a control channel the peer closed.
var ErrClosed = errors.New("the other side closed the connection")

// channel is the control channel: messages as JSON lines, buffered both
// ways. Each send is flushed.
type channel struct {
	conn net.Conn
	r    *bufio.Reader
	w    *bufio.Writer
}

func newChannel(conn net.Conn) *channel {
	return &channel{conn: conn, r: bufio.NewReaderSize(conn, 64<<10), w: bufio.NewWriterSize(conn, 256<<10)}
}

// send writes m, then flushes.
func (c *channel) send(m Msg) error {
	if err := c.queue(m); err != nil {
		return err
	}
	return c.flush()
}

// queue writes m into the buffer, unflushed.
func (c *channel) queue(m Msg) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if _, err := c.w.Write(b); err != nil {
		return fmt.Errorf("send %s: %w", m.Op, err)
	}
	return nil
}

func (c *channel) flush() error {
	if err := c.w.Flush(); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	return nil
}

// sendError reports err to the peer, best effort: the peer may be gone.
func (c *channel) sendError(err error) {
	c.conn.SetWriteDeadline(time.Now().Add(time.Second))
	c.send(Msg{Op: opError, Error: err.Error()})
}

// recv reads the next message; an error message becomes a RemoteError.
func (c *channel) recv(timeout time.Duration) (Msg, error) {
	if timeout > 0 {
		c.conn.SetReadDeadline(time.Now().Add(timeout))
		defer c.conn.SetReadDeadline(time.Time{})
	}
	var line []byte
	for {
		part, isPrefix, err := c.r.ReadLine()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return Msg{}, ErrClosed
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return Msg{}, fmt.Errorf("no answer in %v: %w", timeout, err)
			}
			return Msg{}, err
		}
		line = append(line, part...)
		if len(line) > maxLine {
			return Msg{}, fmt.Errorf("a control message longer than %d bytes", maxLine)
		}
		if !isPrefix {
			break
		}
	}
	var m Msg
	if err := json.Unmarshal(line, &m); err != nil {
		return Msg{}, fmt.Errorf("bad control message %.80q: %w", line, err)
	}
	if m.Op == opError {
		return m, &RemoteError{Msg: m.Error}
	}
	return m, nil
}

// expect reads the next message and requires op.
func (c *channel) expect(op string, timeout time.Duration) (Msg, error) {
	m, err := c.recv(timeout)
	if err != nil {
		return m, err
	}
	if m.Op != op {
		return m, fmt.Errorf("got %q, want %q", m.Op, op)
	}
	return m, nil
}

// bootID is this host's boot id: two ambers that read the same one run on
// the same kernel, and share PIDs and file systems.
func bootID() (string, error) {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return "", fmt.Errorf("boot id: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// validName accepts the name of an image file in a directory: no path.
func validName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return fmt.Errorf("bad image name %q", name)
	}
	return nil
}
