package proc

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// atNull is AT_NULL from <elf.h>: the type that ends the auxiliary vector.
const atNull = 0

// auxvEntry is the size of one (type, value) pair on a 64-bit kernel.
const auxvEntry = 16

// ParseAuxv splits /proc/PID/auxv (native-endian uint64 pairs) into words,
// up to and including the AT_NULL pair. It is an error if the length is
// not a multiple of 16 or no AT_NULL ends the vector, as for a kernel
// thread or a process whose memory is gone, whose auxv is empty.
func ParseAuxv(b []byte) ([]uint64, error) {
	if len(b)%auxvEntry != 0 {
		return nil, fmt.Errorf("length %d is not a multiple of %d", len(b), auxvEntry)
	}
	words := make([]uint64, 0, len(b)/8)
	for i := 0; i < len(b); i += auxvEntry {
		typ := binary.NativeEndian.Uint64(b[i:])
		val := binary.NativeEndian.Uint64(b[i+8:])
		words = append(words, typ, val)
		if typ == atNull {
			return words, nil
		}
	}
	return nil, errors.New("no AT_NULL entry")
}

// ReadAuxv reads /proc/PID/auxv.
func ReadAuxv(pid int) ([]uint64, error) {
	path := pidPath(pid, "auxv")
	b, err := ReadFile(path)
	if err != nil {
		return nil, err
	}
	words, err := ParseAuxv(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return words, nil
}
