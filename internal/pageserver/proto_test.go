package pageserver

import (
	"bytes"
	"encoding/hex"
	"testing"
)

// TestRequestWire checks a request's bytes against CRIU's struct
// page_server_iov on x86-64: u32 command (flags in the upper 16 bits),
// 4 bytes of padding, nr_pages, vaddr, dst_id.
func TestRequestWire(t *testing.T) {
	r := Request{Cmd: CmdAddF, Flags: FlagPresent, NrPages: 3, Vaddr: 0x7f0000001000, Dest: TaskDest(1234).Encode()}
	var b [RequestSize]byte
	r.Marshal(b[:])
	want := "06000400" + "00000000" + // ADD_F | PE_PRESENT<<16, padding
		"0300000000000000" + // nr_pages
		"00100000007f0000" + // vaddr
		"01d2040000000000" // 1234<<8 | PS_TYPE_PID
	if got := hex.EncodeToString(b[:]); got != want {
		t.Fatalf("wire\n got %s\nwant %s", got, want)
	}
	if got := ParseRequest(b[:]); got != r {
		t.Fatalf("parsed %+v, want %+v", got, r)
	}
}

// TestParseRequestIgnoresPadding: CRIU does not clear the padding after
// the command word.
func TestParseRequestIgnoresPadding(t *testing.T) {
	var b [RequestSize]byte
	Request{Cmd: CmdClose}.Marshal(b[:])
	copy(b[4:8], []byte{0xde, 0xad, 0xbe, 0xef})
	if got := ParseRequest(b[:]); got.Cmd != CmdClose || got.Flags != 0 {
		t.Fatalf("parsed %+v, want CLOSE without flags", got)
	}
}

func TestPageFlags(t *testing.T) {
	for _, tt := range []struct {
		r    Request
		want uint32
	}{
		{Request{Cmd: CmdAdd}, FlagPresent},
		{Request{Cmd: CmdHole}, FlagParent},
		{Request{Cmd: CmdAddF, Flags: FlagLazy}, FlagLazy},
		{Request{Cmd: CmdAddF, Flags: FlagPresent | FlagLazy}, FlagPresent | FlagLazy},
	} {
		if got := tt.r.PageFlags(); got != tt.want {
			t.Errorf("%v: flags %#x, want %#x", tt.r, got, tt.want)
		}
	}
}

// TestDecodeDest decodes the destination types of CRIU 3.3 on and the
// image numbers older CRIUs sent in their place.
func TestDecodeDest(t *testing.T) {
	for _, tt := range []struct {
		wire uint64
		want Dest
	}{
		{42<<8 | 1, Dest{KindTask, 42}},
		{42<<8 | 11, Dest{KindTask, 42}},
		{42<<8 | 17, Dest{KindTask, 42}},
		{7<<8 | 2, Dest{KindShmem, 7}},
		{7<<8 | 34, Dest{KindShmem, 7}},
		{7<<8 | 3, Dest{KindUnknown, 7}},
	} {
		if got := DecodeDest(tt.wire); got != tt.want {
			t.Errorf("DecodeDest(%#x) = %v, want %v", tt.wire, got, tt.want)
		}
	}
	for _, d := range []Dest{TaskDest(1), {KindShmem, 0x1234}} {
		if got := DecodeDest(d.Encode()); got != d {
			t.Errorf("round trip of %v: %v", d, got)
		}
	}
	if n := (Dest{KindShmem, 5}).ImageName(); n != "pagemap-shmem-5.img" {
		t.Errorf("shmem image name %q", n)
	}
}

// TestClientRequests checks the bytes a client sends for a session, and
// that it reads the server's answers.
func TestClientRequests(t *testing.T) {
	answers := bytes.NewBuffer([]byte{1, 0, 0, 0, 0})
	var sent bytes.Buffer
	c := NewClient(&fakeConn{r: answers, w: &sent}, "test")
	parent, err := c.OpenTask(9)
	if err != nil || !parent {
		t.Fatalf("OpenTask: %v, %v; want a parent", parent, err)
	}
	page := bytes.Repeat([]byte{0xab}, PageSize)
	if err := c.Add(0x1000, page); err != nil {
		t.Fatal(err)
	}
	if err := c.Hole(0x2000, 5); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	want := []Request{
		{Cmd: CmdOpen2, Dest: TaskDest(9).Encode()},
		{Cmd: CmdAddF, Flags: FlagPresent, NrPages: 1, Vaddr: 0x1000, Dest: TaskDest(9).Encode()},
		{Cmd: CmdAddF, Flags: FlagParent, NrPages: 5, Vaddr: 0x2000, Dest: TaskDest(9).Encode()},
		{Cmd: CmdClose},
	}
	b := sent.Bytes()
	for i, w := range want {
		if len(b) < RequestSize {
			t.Fatalf("request %d missing", i)
		}
		if got := ParseRequest(b); got != w {
			t.Fatalf("request %d: %v, want %v", i, got, w)
		}
		b = b[RequestSize:]
		if w.Flags&FlagPresent != 0 {
			if !bytes.Equal(b[:PageSize], page) {
				t.Fatalf("request %d: pages not sent after it", i)
			}
			b = b[PageSize:]
		}
	}
	if len(b) != 0 {
		t.Fatalf("%d bytes more than the requests", len(b))
	}
}

// TestClientCloseStatus: a close the server answers with an error
// status fails.
func TestClientCloseStatus(t *testing.T) {
	c := NewClient(&fakeConn{r: bytes.NewBuffer([]byte{0xff, 0xff, 0xff, 0xff}), w: new(bytes.Buffer)}, "test")
	if err := c.Close(); err == nil {
		t.Fatal("close answered -1 succeeded")
	}
}
