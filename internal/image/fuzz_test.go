package image_test

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/mm"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/pstree"
	"google.golang.org/protobuf/proto"

	"amber/internal/image"
)

// maxFuzzEntries bounds the entries read from one input.
const maxFuzzEntries = 1000

// imageBytes encodes entries as an image of kind, in memory.
func imageBytes(t testing.TB, kind image.Kind, entries ...proto.Message) []byte {
	b := le32(kind.Magic)
	if kind.Prefix != 0 {
		b = le32(kind.Prefix, kind.Magic)
	}
	for _, e := range entries {
		m, err := proto.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		b = append(append(b, le32(uint32(len(m)))...), m...)
	}
	return b
}

// FuzzReader feeds arbitrary bytes to NewReader and Next as a pstree and
// as an mm image. Nothing may panic; every error but io.EOF names the file.
func FuzzReader(f *testing.F) {
	pst := imageBytes(f, image.Pstree, pstreeEntry(1, 0, 1, 2), pstreeEntry(3, 1, 3))
	mmi := imageBytes(f, image.MM, mmEntry(4))
	for _, seed := range [][]byte{pst, mmi, pst[:len(pst)-3], mmi[:9], nil, le32(image.MagicCommon)} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		readFuzz(t, data, image.Pstree, func() proto.Message { return &pstree.PstreeEntry{} })
		readFuzz(t, data, image.MM, func() proto.Message { return &mm.MmEntry{} })
	})
}

func readFuzz(t *testing.T, data []byte, kind image.Kind, newEntry func() proto.Message) {
	const path = "fuzz.img"
	r, err := image.NewReader(bytes.NewReader(data), path, kind)
	if err != nil {
		checkFuzzErr(t, err, path)
		return
	}
	for range maxFuzzEntries {
		err := r.Next(newEntry())
		if err == io.EOF {
			return
		}
		if err != nil {
			checkFuzzErr(t, err, path)
			return
		}
	}
}

func checkFuzzErr(t *testing.T, err error, path string) {
	if !strings.HasPrefix(err.Error(), path+": ") {
		t.Errorf("error does not start with the path: %v", err)
	}
}
