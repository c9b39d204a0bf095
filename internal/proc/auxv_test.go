package proc

import (
	"encoding/binary"
	"errors"
	"io/fs"
	"os"
	"slices"
	"strings"
	"testing"
)

// atPagesz is AT_PAGESZ from <elf.h>.
const atPagesz = 6

// auxvBytes encodes words as the kernel writes /proc/PID/auxv.
func auxvBytes(words ...uint64) []byte {
	var b []byte
	for _, w := range words {
		b = binary.NativeEndian.AppendUint64(b, w)
	}
	return b
}

func TestParseAuxv(t *testing.T) {
	for _, tc := range []struct {
		in   []byte
		want []uint64
		err  string
	}{
		{in: auxvBytes(33, 0x7ffd, 6, 4096, 0, 0), want: []uint64{33, 0x7ffd, 6, 4096, 0, 0}},
		// The kernel's copy is as long as the saved vector; stop at AT_NULL.
		{in: auxvBytes(6, 4096, 0, 0, 0, 0, 0, 0), want: []uint64{6, 4096, 0, 0}},
		{in: auxvBytes(6, 4096, 0), err: "length 24 is not a multiple of 16"},
		{in: auxvBytes(6, 4096), err: "no AT_NULL"},
		{in: nil, err: "no AT_NULL"},
	} {
		got, err := ParseAuxv(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseAuxv(%x) = %v, %v; want error %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("ParseAuxv(%x) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestReadAuxvSelf(t *testing.T) {
	words, err := ReadAuxv(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	page := uint64(0)
	for i := 0; i+1 < len(words); i += 2 {
		if words[i] == atPagesz {
			page = words[i+1]
		}
	}
	if page != uint64(os.Getpagesize()) {
		t.Errorf("AT_PAGESZ = %d, want %d (auxv %v)", page, os.Getpagesize(), words)
	}
}

func TestReadAuxvNoProcess(t *testing.T) {
	if _, err := ReadAuxv(noSuchPid); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadAuxv(no such pid) = %v, want fs.ErrNotExist", err)
	}
}

func FuzzParseAuxv(f *testing.F) {
	f.Add(auxvBytes(33, 0x7ffd, 6, 4096, 0, 0))
	f.Add(auxvBytes(6, 4096))
	f.Fuzz(func(t *testing.T, b []byte) {
		words, err := ParseAuxv(b)
		if err != nil {
			return
		}
		if n := len(words); n%2 != 0 || n == 0 || words[n-2] != atNull || n*8 > len(b) {
			t.Fatalf("ParseAuxv(%x) = %v", b, words)
		}
	})
}
