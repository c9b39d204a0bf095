package files

import (
	"io/fs"
	"os"
	"syscall"
	"time"
)

// unixMode returns st_mode (type and permission bits) of a file.
func unixMode(st os.FileInfo) uint32 {
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return s.Mode
	}
	return uint32(st.Mode().Perm())
}

// statInfo is an os.FileInfo made from an fstat: what os.Stat of the
// file's path would give, without os.NewFile's fcntl and finalizer for a
// descriptor that is only stat'ed and closed.
type statInfo struct {
	name string
	sys  syscall.Stat_t
}

// fstatInfo stats fd; name is the base name the FileInfo reports.
func fstatInfo(fd int, name string) (os.FileInfo, error) {
	st := &statInfo{name: name}
	if err := syscall.Fstat(fd, &st.sys); err != nil {
		return nil, err
	}
	return st, nil
}

func (s *statInfo) Name() string       { return s.name }
func (s *statInfo) Size() int64        { return s.sys.Size }
func (s *statInfo) ModTime() time.Time { return time.Unix(s.sys.Mtim.Unix()) }
func (s *statInfo) IsDir() bool        { return s.Mode().IsDir() }
func (s *statInfo) Sys() any           { return &s.sys }

// Mode converts st_mode as os.Stat does.
func (s *statInfo) Mode() fs.FileMode {
	m := fs.FileMode(s.sys.Mode & 0o777)
	switch s.sys.Mode & syscall.S_IFMT {
	case syscall.S_IFBLK:
		m |= fs.ModeDevice
	case syscall.S_IFCHR:
		m |= fs.ModeDevice | fs.ModeCharDevice
	case syscall.S_IFDIR:
		m |= fs.ModeDir
	case syscall.S_IFIFO:
		m |= fs.ModeNamedPipe
	case syscall.S_IFLNK:
		m |= fs.ModeSymlink
	case syscall.S_IFSOCK:
		m |= fs.ModeSocket
	}
	if s.sys.Mode&syscall.S_ISGID != 0 {
		m |= fs.ModeSetgid
	}
	if s.sys.Mode&syscall.S_ISUID != 0 {
		m |= fs.ModeSetuid
	}
	if s.sys.Mode&syscall.S_ISVTX != 0 {
		m |= fs.ModeSticky
	}
	return m
}
