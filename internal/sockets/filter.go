package sockets

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/sys/unix"

	"amber/internal/plan"
)

// Classic BPF socket filters (SO_ATTACH_FILTER), as CRIU keeps them: each
// instruction (struct sock_filter: code, jt, jf, k) as the 64-bit word of
// its 8 bytes, in SkOptsEntry.so_filter; the socket gets them back with
// SO_ATTACH_FILTER. A filter attached as an eBPF program (SO_ATTACH_BPF)
// has no classic form to read back, and is not kept.

// sockFilterSize is the size of a struct sock_filter.
const sockFilterSize = 8

// dumpFilter reads the classic BPF filter of socket s, nil if none.
func dumpFilter(s int) ([]uint64, error) {
	// The kernel counts the length in instructions; with no buffer it
	// says how many there are.
	var n uint32
	if err := getsockopt(s, unix.SOL_SOCKET, unix.SO_GET_FILTER, nil, &n); err != nil || n == 0 {
		return nil, wrapFilterErr(err)
	}
	buf := make([]byte, n*sockFilterSize)
	if err := getsockopt(s, unix.SOL_SOCKET, unix.SO_GET_FILTER, buf, &n); err != nil {
		return nil, wrapFilterErr(err)
	}
	words := make([]uint64, min(int(n), len(buf)/sockFilterSize))
	for i := range words {
		words[i] = binary.LittleEndian.Uint64(buf[i*sockFilterSize:])
	}
	return words, nil
}

func wrapFilterErr(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("getsockopt SO_GET_FILTER: %w", err)
}

// planFilter plans attaching filter to the socket at fd: a struct
// sock_fprog (length, pointer) pointing at the instructions, both in the
// plan's data.
func planFilter(b *plan.Builder, fd int, filter []uint64, what string) {
	if len(filter) == 0 {
		return
	}
	code := make([]byte, 0, len(filter)*sockFilterSize)
	for _, w := range filter {
		code = binary.LittleEndian.AppendUint64(code, w)
	}
	prog := binary.LittleEndian.AppendUint64(nil, uint64(len(filter))) // len, then padding
	prog = binary.LittleEndian.AppendUint64(prog, b.Bytes(code))
	b.Call(fmt.Sprintf("attach the socket filter of %d instructions to %s", len(filter), what), unix.SYS_SETSOCKOPT,
		uint64(fd), unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, b.Bytes(prog), uint64(len(prog)))
}
