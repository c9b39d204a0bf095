package image

import (
	"fmt"
	"path/filepath"
)

// Dir names the files of an images directory the way CRIU does.
type Dir string

// Path returns the path of a file in the directory.
func (d Dir) Path(name string) string { return filepath.Join(string(d), name) }

// InventoryPath is inventory.img.
func (d Dir) InventoryPath() string { return d.Path("inventory.img") }

// PstreePath is pstree.img.
func (d Dir) PstreePath() string { return d.Path("pstree.img") }

// FilesPath is files.img, every open file of the tree.
func (d Dir) FilesPath() string { return d.Path("files.img") }

// CorePath is core-TID.img, one per thread.
func (d Dir) CorePath(tid int) string { return d.Path(fmt.Sprintf("core-%d.img", tid)) }

// IDsPath is ids-PID.img.
func (d Dir) IDsPath(pid int) string { return d.Path(fmt.Sprintf("ids-%d.img", pid)) }

// MMPath is mm-PID.img.
func (d Dir) MMPath(pid int) string { return d.Path(fmt.Sprintf("mm-%d.img", pid)) }

// PagemapPath is pagemap-PID.img.
func (d Dir) PagemapPath(pid int) string { return d.Path(fmt.Sprintf("pagemap-%d.img", pid)) }

// PagesPath is pages-ID.img, raw page contents in pagemap order.
func (d Dir) PagesPath(id uint32) string { return d.Path(fmt.Sprintf("pages-%d.img", id)) }

// FdinfoPath is fdinfo-ID.img, the descriptor table with files_id ID.
func (d Dir) FdinfoPath(filesID uint32) string { return d.Path(fmt.Sprintf("fdinfo-%d.img", filesID)) }

// FSPath is fs-PID.img.
func (d Dir) FSPath(pid int) string { return d.Path(fmt.Sprintf("fs-%d.img", pid)) }

// StatsDumpPath is stats-dump.
func (d Dir) StatsDumpPath() string { return d.Path("stats-dump") }

// StatsRestorePath is stats-restore.
func (d Dir) StatsRestorePath() string { return d.Path("stats-restore") }

// ShmemPagemapPath is pagemap-shmem-SHMID.img, the pages of one shared
// memory object (anonymous shared memory, a memfd, a SysV segment).
func (d Dir) ShmemPagemapPath(shmid uint64) string {
	return d.Path(fmt.Sprintf("pagemap-shmem-%d.img", shmid))
}

// MemfdPath is memfd.img, the memfd inodes of the dump.
func (d Dir) MemfdPath() string { return d.Path("memfd.img") }

// IpcnsShmPath is ipcns-shm-ID.img, the SysV shared memory segments of
// the IPC namespace with that id.
func (d Dir) IpcnsShmPath(nsID uint32) string { return d.Path(fmt.Sprintf("ipcns-shm-%d.img", nsID)) }

// TtyInfoPath is tty-info.img, the state of every terminal of the dump.
func (d Dir) TtyInfoPath() string { return d.Path("tty-info.img") }

// TtyDataPath is tty-data.img, the bytes queued in ptys.
func (d Dir) TtyDataPath() string { return d.Path("tty-data.img") }
