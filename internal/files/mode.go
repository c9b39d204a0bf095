package files

import (
	"os"
	"syscall"
)

// unixMode returns st_mode (type and permission bits) of a file.
func unixMode(st os.FileInfo) uint32 {
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return s.Mode
	}
	return uint32(st.Mode().Perm())
}
