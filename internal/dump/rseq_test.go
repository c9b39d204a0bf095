package dump

import (
	"encoding/binary"
	"testing"
)

func TestRseqResumeIP(t *testing.T) {
	cs := rseqCS{startIP: 0x1000, postCommitOffset: 0x20, abortIP: 0x2000}
	for _, c := range []struct {
		name   string
		cs     rseqCS
		ip     uint64
		want   uint64
		failed bool
	}{
		{"before the section", cs, 0xfff, 0xfff, false},
		{"at its start", cs, 0x1000, 0x2000, false},
		{"inside", cs, 0x101f, 0x2000, false},
		{"at its commit end", cs, 0x1020, 0x1020, false},
		{"no restart on signal", rseqCS{flags: rseqNoRestartOnSignal, startIP: 0x1000, postCommitOffset: 0x20, abortIP: 0x2000}, 0x1010, 0x1010, false},
		{"unknown version inside", rseqCS{version: 1, startIP: 0x1000, postCommitOffset: 0x20}, 0x1010, 0, true},
		{"unknown version outside", rseqCS{version: 1, startIP: 0x1000, postCommitOffset: 0x20}, 0x3000, 0x3000, false},
	} {
		got, err := c.cs.resumeIP(c.ip)
		if (err != nil) != c.failed || got != c.want {
			t.Errorf("%s: resumeIP(%#x) = %#x, %v; want %#x, failure %v", c.name, c.ip, got, err, c.want, c.failed)
		}
	}
}

func TestParseRseqCS(t *testing.T) {
	b := make([]byte, rseqCsSize)
	le := binary.LittleEndian
	le.PutUint32(b[0:], 0)
	le.PutUint32(b[4:], 2)
	le.PutUint64(b[8:], 0x401000)
	le.PutUint64(b[16:], 0x30)
	le.PutUint64(b[24:], 0x402000)
	want := rseqCS{flags: 2, startIP: 0x401000, postCommitOffset: 0x30, abortIP: 0x402000}
	if got := parseRseqCS(b); got != want {
		t.Fatalf("parseRseqCS = %+v, want %+v", got, want)
	}
}
