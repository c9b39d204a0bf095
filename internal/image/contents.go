package image

import (
	"bytes"
	"io"
	"os"
	"sync"
)

// contents is what one opening of an images directory knows of its
// files' contents, shared by the copies of its Dir: the size and CRC32C
// of each image written through it (for the manifest, so that the dump
// need not read them back), and the bytes of each image the manifest
// check read and verified (so that the restore reads them once).
type contents struct {
	mu       sync.Mutex
	written  map[string]Sum
	verified map[string][]byte
}

func newContents() *contents {
	return &contents{written: map[string]Sum{}, verified: map[string][]byte{}}
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

// openContents opens the image at p for reading its entries: the bytes
// the manifest check verified, if it kept them, else the file.
func (p Path) openContents() (io.ReadCloser, error) {
	if b, ok := p.dir.contents.takeVerified(p.name); ok {
		return io.NopCloser(bytes.NewReader(b)), nil
	}
	f, err := p.Open()
	if err != nil {
		return nil, err
	}
	return f, nil
}

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
