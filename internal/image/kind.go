package image

import "encoding/binary"

// Magic numbers shared by every image (CRIU's criu/include/magic.h).
const (
	MagicCommon  = 0x54564319 // IMG_COMMON, "Sarov"
	MagicService = 0x55105940 // IMG_SERVICE, "Zlatoust"
)

// Kind is one kind of image file: its name in CRIU's magic table and its
// magic number.
type Kind struct {
	Name  string
	Magic uint32
	// Prefix is the magic written before Magic: MagicCommon, MagicService,
	// or 0 for the inventory, which has none.
	Prefix uint32
}

func (k Kind) header() []byte {
	var b []byte
	if k.Prefix != 0 {
		b = binary.LittleEndian.AppendUint32(b, k.Prefix)
	}
	return binary.LittleEndian.AppendUint32(b, k.Magic)
}

// The image kinds amber reads and writes. Values are CRIU's.
var (
	Inventory = Kind{"INVENTORY", 0x58313116, 0}
	Pstree    = Kind{"PSTREE", 0x50273030, MagicCommon}
	Core      = Kind{"CORE", 0x55053847, MagicCommon}
	IDs       = Kind{"IDS", 0x54432030, MagicCommon}
	MM        = Kind{"MM", 0x57492820, MagicCommon}
	Pagemap   = Kind{"PAGEMAP", 0x56084025, MagicCommon}
	Files     = Kind{"FILES", 0x56303138, MagicCommon}
	Fdinfo    = Kind{"FDINFO", 0x56213732, MagicCommon}
	FS        = Kind{"FS", 0x51403912, MagicCommon}
	Stats     = Kind{"STATS", 0x57093306, MagicService}
)

// PipesData holds the bytes in flight in pipes: entries each followed by
// their raw data.
var PipesData = Kind{"PIPES_DATA", 0x56453709, MagicCommon}

// Shared memory images: the memfd inodes (memfd.img) and the SysV shared
// memory segments of an IPC namespace (ipcns-shm-ID.img). The contents of
// every shared memory object are in pagemap-shmem-SHMID.img (PAGEMAP
// entries whose vaddr is an offset in the object) and a pages image.
var (
	MemfdInode = Kind{"MEMFD_INODE", 0x48453499, MagicCommon}
	IpcnsShm   = Kind{"IPCNS_SHM", 0x46283044, MagicCommon}
)

// The other System V objects of an IPC namespace: its semaphore sets
// (ipcns-sem-ID.img, each entry followed by the values) and its message
// queues (ipcns-msg-ID.img, each entry followed by its messages).
var (
	IpcnsSem = Kind{"IPCNS_SEM", 0x59573019, MagicCommon}
	IpcnsMsg = Kind{"IPCNS_MSG", 0x55453737, MagicCommon}
)

// Images of open files besides files.img: messages queued on sockets,
// data in FIFOs (pipes-data's format), unlinked files kept by the dump
// (remap-fpath.img names them, ghost-file-ID.img holds each).
var (
	SkQueues   = Kind{"SK_QUEUES", 0x56264026, MagicCommon}
	FifoData   = Kind{"FIFO_DATA", 0x59333054, MagicCommon}
	RemapFpath = Kind{"REMAP_FPATH", 0x59133954, MagicCommon}
	GhostFile  = Kind{"GHOST_FILE", 0x52583605, MagicCommon}
)

// Terminals: the state of each side of each terminal (tty-info.img) and
// the bytes queued in ptys (tty-data.img). Their open files are TTY
// entries of files.img.
var (
	TtyInfo = Kind{"TTY_INFO", 0x59453036, MagicCommon}
	TtyData = Kind{"TTY_DATA", 0x59413026, MagicCommon}
)

// TcpStream is the state of one TCP connection dumped in repair mode
// (tcp-stream-INO.img, INO the socket's inode in hex): one entry followed
// by the bytes of its receive queue, then those of its send queue.
var TcpStream = Kind{"TCP_STREAM", 0x51465506, MagicCommon}

// Seccomp holds the seccomp filters of the whole tree (seccomp.img): one
// entry whose filters each thread's core image refers to by index.
var Seccomp = Kind{"SECCOMP", 0x64413049, MagicCommon}

// Cgroup holds the cgroups of the whole tree (cgroup.img): one entry
// with the sets of cgroups the processes' core images name and the
// cgroup directories with their properties.
var Cgroup = Kind{"CGROUP", 0x59383330, MagicCommon}

// FileLocks holds the file locks the tree held (filelocks.img): flock,
// POSIX and OFD locks, each with the process and descriptor that takes
// it again.
var FileLocks = Kind{"FILE_LOCKS", 0x54323616, MagicCommon}

// Namespaces: the host and domain name of a UTS namespace
// (utsns-ID.img), the settings of an IPC namespace (ipcns-var-ID.img)
// and the clocks of a time namespace (timens-ID.img), ID the
// namespace's id in ids-PID.img.
var (
	Utsns  = Kind{"UTSNS", 0x54473203, MagicCommon}
	IpcVar = Kind{"IPC_VAR", 0x53115007, MagicCommon}
	Timens = Kind{"TIMENS", 0x43114433, MagicCommon}
)

// Userns holds the uid and gid maps of a user namespace (userns-ID.img,
// one UsernsEntry), ID the namespace's id in ids-PID.img.
var Userns = Kind{"USERNS", 0x55474906, MagicCommon}

// Mnts holds the mounts of one mount namespace (mountpoints-ID.img, ID
// the namespace's id in ids-PID.img), parents before children. The
// contents of its tmpfs mounts are gzipped tars without a header,
// tmpfs-dev-DEV.tar.gz.img (Dir.TmpfsPath).
var Mnts = Kind{"MNTS", 0x55563928, MagicCommon}

// Network namespaces: the links of one (netdev-ID.img) and its
// settings (netns-ID.img), ID the namespace's id in ids-PID.img.
var (
	Netdev = Kind{"NETDEV", 0x57373951, MagicCommon}
	Netns  = Kind{"NETNS", 0x55933752, MagicCommon}
)
