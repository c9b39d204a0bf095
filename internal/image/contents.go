package image

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// contents is what one opening of an images directory knows of its
// files' contents, shared by the copies of its Dir: the size and CRC32C
// of each image written through it (for the manifest, so that the dump
// need not read them back), the bytes of each image the manifest check
// read and verified (so that the restore reads them once), and, in a
// shared directory (trust.go), a descriptor of every image it verified.
type contents struct {
	mu       sync.Mutex
	written  map[string]Sum
	verified map[string][]byte
	pinned   map[string]*os.File
	// checked is set once the manifest check pinned every image it
	// lists.
	checked bool
	// via is the path through which restored tasks open images, a
	// descriptor of the directory under /proc (Dir.TasksViaProc,
	// Dir.TasksVia): "" for the directory's own path.
	via string
}

func newContents() *contents {
	return &contents{written: map[string]Sum{}, verified: map[string][]byte{}, pinned: map[string]*os.File{}}
}

// pin keeps a descriptor of f, verified as image name, open until the
// directory is closed.
func (c *contents) pin(name string, f *os.File) error {
	fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("%s: keep it open: %w", f.Name(), err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.pinned[name]; old != nil {
		old.Close()
	}
	c.pinned[name] = os.NewFile(uintptr(fd), f.Name())
	return nil
}

// setVerified records that every image of the manifest is pinned.
func (c *contents) setVerified() {
	c.mu.Lock()
	c.checked = true
	c.mu.Unlock()
}

// isVerified tells whether every image of the manifest is pinned.
func (c *contents) isVerified() bool {
	if c == nil {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.checked
}

// pinnedFile returns the pinned descriptor of name, or nil.
func (c *contents) pinnedFile(name string) *os.File {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pinned[name]
}

// closePinned closes every pinned descriptor.
func (c *contents) closePinned() {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for name, f := range c.pinned {
		f.Close()
		delete(c.pinned, name)
	}
}

// wrote records the sum of a file written through the directory.
func (c *contents) wrote(name string, s Sum) {
	if c == nil {
		return
	}
	c.mu.Lock()
	c.written[name] = s
	c.mu.Unlock()
}

// forget drops what is known of name, written or removed anew.
func (c *contents) forget(name string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	delete(c.written, name)
	delete(c.verified, name)
	c.mu.Unlock()
}

// writtenSums returns the sums of the files written through the
// directory.
func (c *contents) writtenSums() map[string]Sum {
	out := map[string]Sum{}
	if c == nil {
		return out
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, v := range c.written {
		out[k] = v
	}
	return out
}

// keepVerified keeps the verified bytes of name.
func (c *contents) keepVerified(name string, b []byte) {
	if c == nil {
		return
	}
	c.mu.Lock()
	c.verified[name] = b
	c.mu.Unlock()
}

// takeVerified returns, and forgets, the verified bytes of name: each is
// read once.
func (c *contents) takeVerified(name string) ([]byte, bool) {
	if c == nil {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	b, ok := c.verified[name]
	delete(c.verified, name)
	return b, ok
}

// OpenContents opens the image at p for reading its entries: the bytes
// the manifest check verified, if it kept them (read once: a second open
// reads the file), else the file as Open opens it.
func (p Path) OpenContents() (io.ReadCloser, error) {
	if b, ok := p.dir.contents.takeVerified(p.name); ok {
		return verifiedReader{bytes.NewReader(b)}, nil
	}
	f, err := p.Open()
	if err != nil {
		return nil, err
	}
	return f, nil
}

// verifiedReader reads verified bytes; its Len sizes the image reader's
// buffer.
type verifiedReader struct{ *bytes.Reader }

// Close does nothing: the bytes need no release.
func (verifiedReader) Close() error { return nil }

// hashingFile is a file that sums what is written to it.
type hashingFile struct {
	*os.File
	sum Sum
}

func (h *hashingFile) Write(b []byte) (int, error) {
	n, err := h.File.Write(b)
	h.sum.CRC = updateChecksum(h.sum.CRC, b[:n])
	h.sum.Size += int64(n)
	return n, err
}
