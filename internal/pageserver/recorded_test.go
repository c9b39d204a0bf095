package pageserver

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"amber/internal/image"
	"amber/internal/mem"
)

// Tests against a session of CRIU 4.2's dump and page server, recorded
// once (testdata/README.md).

// recordedRequests are the raw requests CRIU's dump sent.
func recordedRequests(t *testing.T) [][]byte {
	t.Helper()
	b, err := os.ReadFile("testdata/criu42-dump-requests.bin")
	if err != nil {
		t.Fatal(err)
	}
	if len(b)%RequestSize != 0 {
		t.Fatalf("recorded requests: %d bytes, not whole requests", len(b))
	}
	var out [][]byte
	for ; len(b) > 0; b = b[RequestSize:] {
		out = append(out, b[:RequestSize])
	}
	return out
}

// patternPages are the contents the tests send for the pages of r in
// place of the recorded ones: each page filled with a byte of its
// address.
func patternPages(r Request) []byte {
	var b []byte
	for i := range r.NrPages {
		b = append(b, bytes.Repeat([]byte{byte((r.Vaddr + i*PageSize) >> 12)}, PageSize)...)
	}
	return b
}

// hasPages tells whether pages follow r on the wire.
func hasPages(r Request) bool {
	return (r.Cmd == CmdAdd || r.Cmd == CmdAddF) && r.PageFlags()&FlagPresent != 0
}

// TestServeCriuDump replays CRIU's dump into Serve: the answers are
// CRIU's server's, byte for byte, and the pagemap holds the same pages
// with the same flags as the one CRIU's server wrote.
func TestServeCriuDump(t *testing.T) {
	var stream, pagesWant bytes.Buffer
	for _, raw := range recordedRequests(t) {
		stream.Write(raw)
		if r := ParseRequest(raw); hasPages(r) {
			stream.Write(patternPages(r))
			pagesWant.Write(patternPages(r))
		}
	}
	dir := t.TempDir()
	d, err := image.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var answers bytes.Buffer
	if _, err := Serve(&fakeConn{r: &stream, w: &answers}, d, nil); err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("testdata/criu42-server-answers.bin")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(answers.Bytes(), want) {
		t.Fatalf("answers %x, CRIU's server answered %x", answers.Bytes(), want)
	}
	ours, id := pagemapRuns(t, d.PagemapPath(4072))
	d2, err := image.OpenDir("testdata")
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	criu, criuID := pagemapRuns(t, d2.File("criu42-server-pagemap-4072.img"))
	if !slices.Equal(ours, criu) || id != criuID {
		t.Fatalf("pagemap: pages-%d.img %v\nCRIU's server: pages-%d.img %v", id, ours, criuID, criu)
	}
	got, err := os.ReadFile(filepath.Join(dir, "pages-65537.img"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, pagesWant.Bytes()) {
		t.Fatal("pages-65537.img does not hold the pages sent, in order")
	}
}

// flaggedRun is a run of pages with the flags of its pagemap entries.
type flaggedRun struct {
	start, end uint64
	flags      uint32
}

// pagemapRuns reads a pagemap as runs, entries that continue one
// another with the same flags joined (amber's server joins them, CRIU's
// does not), and the number of its pages image.
func pagemapRuns(t *testing.T, p image.Path) ([]flaggedRun, uint32) {
	t.Helper()
	head, entries, err := mem.ReadPagemap(p)
	if err != nil {
		t.Fatal(err)
	}
	var out []flaggedRun
	for _, e := range entries {
		r := flaggedRun{e.GetVaddr(), e.GetVaddr() + mem.NrPages(e)*PageSize, e.GetFlags()}
		if n := len(out); n > 0 && out[n-1].end == r.start && out[n-1].flags == r.flags {
			out[n-1].end = r.end
			continue
		}
		out = append(out, r)
	}
	return out, head.GetPagesId()
}

// TestClientAsCriuDump: amber's client, sending the pages CRIU's dump
// sent, sends the same requests byte for byte, but for PE_LAZY, which
// CRIU sets on anonymous pages a lazy restore could fetch and amber's
// dump does not; it reads CRIU's server's answers.
func TestClientAsCriuDump(t *testing.T) {
	answers, err := os.ReadFile("testdata/criu42-server-answers.bin")
	if err != nil {
		t.Fatal(err)
	}
	var sent bytes.Buffer
	c := NewClient(&fakeConn{r: bytes.NewReader(answers), w: &sent}, "recorded")
	var want bytes.Buffer
	for _, raw := range recordedRequests(t) {
		r := ParseRequest(raw)
		r.Flags &^= FlagLazy
		var b [RequestSize]byte
		r.Marshal(b[:])
		want.Write(b[:])
		if err := drive(c, r); err != nil {
			t.Fatalf("%v: %v", r, err)
		}
	}
	var got bytes.Buffer
	for b := sent.Bytes(); len(b) > 0; {
		got.Write(b[:RequestSize])
		r := ParseRequest(b)
		b = b[RequestSize:]
		if hasPages(r) {
			b = b[r.Bytes():]
		}
	}
	if !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Fatalf("requests\n%x\nCRIU's dump (less PE_LAZY)\n%x", got.Bytes(), want.Bytes())
	}
}

// drive makes the client send request r.
func drive(c *Client, r Request) error {
	switch {
	case r.Cmd == CmdOpen2:
		_, err := c.Open(DecodeDest(r.Dest))
		return err
	case r.Cmd == CmdClose:
		return c.Close()
	case hasPages(r):
		return c.Add(r.Vaddr, patternPages(r))
	case r.Cmd == CmdAddF && r.Flags == FlagParent:
		return c.Hole(r.Vaddr, r.NrPages)
	}
	return nil
}
