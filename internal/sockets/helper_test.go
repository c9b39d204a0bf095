package sockets

import (
	"errors"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	"google.golang.org/protobuf/proto"
)

// testFiles is the files.img of a test that dumps sockets alone: a
// descriptor in flight is refused (package files dumps those).
type testFiles struct{ entries []*fdinfo.FileEntry }

func (f *testFiles) Add(e *fdinfo.FileEntry) uint32 {
	f.entries = append(f.entries, e)
	e.Id = proto.Uint32(uint32(len(f.entries)))
	return e.GetId()
}

func (f *testFiles) DumpInFlight(pid int, fds []int) ([]uint32, error) {
	if len(fds) == 0 {
		return nil, nil
	}
	return nil, errors.New("descriptors in flight: not in a test of sockets alone")
}
