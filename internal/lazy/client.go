package lazy

// The restore's side of the socket to the daemon. A process is handed
// over in one SOCK_SEQPACKET message with its userfaultfd, a pidfd of it
// and its pages images as descriptors, then its missing pages in
// messages of at most rangesPerMsg runs, then the number of images and
// how many piece sums each has (a u32 each; 0: the restore checked the
// image itself), and the sums in messages of at most sumsPerMsg.

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"amber/internal/mem"
)

// SocketName is the daemon's socket in the images directory (CRIU's
// lazy-pages.socket).
const SocketName = "lazy-pages.socket"

const (
	headerSize   = 24 // pid u32, images u32, ranges u64, piece sums u64
	rangeSize    = 32 // start, end, image (int64), offset
	rangesPerMsg = 2048
	sumsPerMsg   = 8192
)

// Client is a restore's connection to the lazy-pages daemon.
type Client struct {
	fd int
}

// Dial connects to the daemon serving the images in dir.
func Dial(dir string) (*Client, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("lazy pages: socket: %w", err)
	}
	path := filepath.Join(dir, SocketName)
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("lazy pages: connect to the daemon at %s (start amber lazy-pages -D first): %w", path, err)
	}
	return &Client{fd: fd}, nil
}

// Close ends the restore's session: the daemon ends once every page is
// in.
func (c *Client) Close() error { return unix.Close(c.fd) }

// Send hands the daemon the userfaultfd uffd of process pid (its PID in
// the images), a pidfd of it (the daemon kills it rather than give it
// pages from a damaged image), the pages it must bring in, and for each
// of l.Images the CRC32C of its pieces of image.PieceSize bytes, which
// the daemon checks before it places a page from one (nil: the restore
// checked the whole image).
func (c *Client) Send(pid, uffd, pidfd int, l *mem.LazyPages, pieces [][]uint32) error {
	fds := []int{uffd, pidfd}
	for _, img := range l.Images {
		f, err := os.OpenFile(img.Path, img.Flags|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("lazy pages: %w", err)
		}
		defer f.Close()
		fds = append(fds, int(f.Fd()))
	}
	hdr := make([]byte, headerSize)
	binary.LittleEndian.PutUint32(hdr, uint32(pid))
	binary.LittleEndian.PutUint32(hdr[4:], uint32(len(l.Images)))
	binary.LittleEndian.PutUint64(hdr[8:], uint64(len(l.Ranges)))
	// The counts follow the number of images: a message never empty.
	counts := binary.LittleEndian.AppendUint32(nil, uint32(len(l.Images)))
	var sums []byte
	for i := range l.Images {
		counts = binary.LittleEndian.AppendUint32(counts, 0)
		if i < len(pieces) {
			binary.LittleEndian.PutUint32(counts[4*(i+1):], uint32(len(pieces[i])))
			for _, crc := range pieces[i] {
				sums = binary.LittleEndian.AppendUint32(sums, crc)
			}
		}
	}
	binary.LittleEndian.PutUint64(hdr[16:], uint64(len(sums)/4))
	if err := unix.Sendmsg(c.fd, hdr, unix.UnixRights(fds...), nil, 0); err != nil {
		return fmt.Errorf("lazy pages: hand pid %d to the daemon: %w", pid, err)
	}
	for i := 0; i < len(l.Ranges); i += rangesPerMsg {
		msg := encodeRanges(l.Ranges[i:min(i+rangesPerMsg, len(l.Ranges))])
		if err := unix.Sendmsg(c.fd, msg, nil, nil, 0); err != nil {
			return fmt.Errorf("lazy pages: hand pid %d to the daemon: %w", pid, err)
		}
	}
	if err := unix.Sendmsg(c.fd, counts, nil, nil, 0); err != nil {
		return fmt.Errorf("lazy pages: hand pid %d to the daemon: %w", pid, err)
	}
	for i := 0; i < len(sums); i += 4 * sumsPerMsg {
		if err := unix.Sendmsg(c.fd, sums[i:min(i+4*sumsPerMsg, len(sums))], nil, nil, 0); err != nil {
			return fmt.Errorf("lazy pages: hand pid %d to the daemon: %w", pid, err)
		}
	}
	return nil
}

func encodeRanges(rs []mem.LazyRange) []byte {
	b := make([]byte, 0, len(rs)*rangeSize)
	for _, r := range rs {
		b = binary.LittleEndian.AppendUint64(b, r.Start)
		b = binary.LittleEndian.AppendUint64(b, r.End)
		b = binary.LittleEndian.AppendUint64(b, uint64(int64(r.Image)))
		b = binary.LittleEndian.AppendUint64(b, r.Off)
	}
	return b
}

func decodeRanges(b []byte) pieces {
	var out pieces
	for ; len(b) >= rangeSize; b = b[rangeSize:] {
		p := piece{start: binary.LittleEndian.Uint64(b), end: binary.LittleEndian.Uint64(b[8:]),
			img: int(int64(binary.LittleEndian.Uint64(b[16:]))), off: binary.LittleEndian.Uint64(b[24:])}
		p.orig = p.start
		out = append(out, p)
	}
	return out
}
