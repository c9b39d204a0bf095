package cpu

import "encoding/binary"

// getU32s reads b as little-endian uint32s.
func getU32s(b []byte) []uint32 {
	v := make([]uint32, len(b)/4)
	for i := range v {
		v[i] = binary.LittleEndian.Uint32(b[4*i:])
	}
	return v
}

// getU64s reads b as little-endian uint64s.
func getU64s(b []byte) []uint64 {
	v := make([]uint64, len(b)/8)
	for i := range v {
		v[i] = binary.LittleEndian.Uint64(b[8*i:])
	}
	return v
}

// putU32s writes v into b little-endian; b must hold it.
func putU32s(b []byte, v []uint32) {
	for i, w := range v {
		binary.LittleEndian.PutUint32(b[4*i:], w)
	}
}

// putU64s writes v into b little-endian; b must hold it.
func putU64s(b []byte, v []uint64) {
	for i, w := range v {
		binary.LittleEndian.PutUint64(b[8*i:], w)
	}
}
