package show

import (
	"github.com/checkpoint-restore/go-criu/v8/crit/images/apparmor"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/autofs"
	binfmt_misc "github.com/checkpoint-restore/go-criu/v8/crit/images/binfmt-misc"
	bpfmap_data "github.com/checkpoint-restore/go-criu/v8/crit/images/bpfmap-data"
	bpfmap_file "github.com/checkpoint-restore/go-criu/v8/crit/images/bpfmap-file"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/cgroup"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/cpuinfo"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/creds"
	criu_core "github.com/checkpoint-restore/go-criu/v8/crit/images/criu-core"
	criu_sa "github.com/checkpoint-restore/go-criu/v8/crit/images/criu-sa"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/eventfd"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/eventpoll"
	ext_file "github.com/checkpoint-restore/go-criu/v8/crit/images/ext-file"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/fh"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/fifo"
	file_lock "github.com/checkpoint-restore/go-criu/v8/crit/images/file-lock"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/fs"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/fsnotify"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/inventory"
	ipc_msg "github.com/checkpoint-restore/go-criu/v8/crit/images/ipc-msg"
	ipc_sem "github.com/checkpoint-restore/go-criu/v8/crit/images/ipc-sem"
	ipc_shm "github.com/checkpoint-restore/go-criu/v8/crit/images/ipc-shm"
	ipc_var "github.com/checkpoint-restore/go-criu/v8/crit/images/ipc-var"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/memfd"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/mm"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/mnt"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/netdev"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/ns"
	packet_sock "github.com/checkpoint-restore/go-criu/v8/crit/images/packet-sock"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/pidns"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/pipe"
	pipe_data "github.com/checkpoint-restore/go-criu/v8/crit/images/pipe-data"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/pstree"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/regfile"
	remap_file_path "github.com/checkpoint-restore/go-criu/v8/crit/images/remap-file-path"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/rlimit"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/seccomp"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/siginfo"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/signalfd"
	sk_inet "github.com/checkpoint-restore/go-criu/v8/crit/images/sk-inet"
	sk_netlink "github.com/checkpoint-restore/go-criu/v8/crit/images/sk-netlink"
	sk_packet "github.com/checkpoint-restore/go-criu/v8/crit/images/sk-packet"
	sk_unix "github.com/checkpoint-restore/go-criu/v8/crit/images/sk-unix"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/stats"
	tcp_stream "github.com/checkpoint-restore/go-criu/v8/crit/images/tcp-stream"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/timens"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/timer"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/timerfd"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/tty"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/tun"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/userns"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/utsns"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/vma"

	"google.golang.org/protobuf/proto"
)

// entryType returns an empty message of the type the entries of the image
// kind called name (CRIU's magic table name) hold, as crit's table does.
// PAGEMAP and GHOST_FILE mix types, which crit decodes itself: for them
// entryType returns nil and true.
func entryType(name string) (proto.Message, bool) {
	switch name {
	case "PAGEMAP", "GHOST_FILE":
		return nil, true
	case "APPARMOR":
		return &apparmor.ApparmorEntry{}, true
	case "AUTOFS":
		return &autofs.AutofsEntry{}, true
	case "BINFMT_MISC":
		return &binfmt_misc.BinfmtMiscEntry{}, true
	case "BPFMAP_DATA":
		return &bpfmap_data.BpfmapDataEntry{}, true
	case "BPFMAP_FILE":
		return &bpfmap_file.BpfmapFileEntry{}, true
	case "CGROUP":
		return &cgroup.CgroupEntry{}, true
	case "CORE":
		return &criu_core.CoreEntry{}, true
	case "CPUINFO":
		return &cpuinfo.CpuinfoEntry{}, true
	case "CREDS":
		return &creds.CredsEntry{}, true
	case "EVENTFD_FILE":
		return &eventfd.EventfdFileEntry{}, true
	case "EVENTPOLL_FILE":
		return &eventpoll.EventpollFileEntry{}, true
	case "EVENTPOLL_TFD":
		return &eventpoll.EventpollTfdEntry{}, true
	case "EXT_FILES":
		return &ext_file.ExtFileEntry{}, true
	case "FANOTIFY_FILE":
		return &fsnotify.FanotifyFileEntry{}, true
	case "FANOTIFY_MARK":
		return &fsnotify.FanotifyMarkEntry{}, true
	case "FDINFO":
		return &fdinfo.FdinfoEntry{}, true
	case "FIFO":
		return &fifo.FifoEntry{}, true
	case "FIFO_DATA":
		return &pipe_data.PipeDataEntry{}, true
	case "FILES":
		return &fdinfo.FileEntry{}, true
	case "FILE_LOCKS":
		return &file_lock.FileLockEntry{}, true
	case "FS":
		return &fs.FsEntry{}, true
	case "IDS":
		return &criu_core.TaskKobjIdsEntry{}, true
	case "INETSK":
		return &sk_inet.InetSkEntry{}, true
	case "INOTIFY_FILE":
		return &fsnotify.InotifyFileEntry{}, true
	case "INOTIFY_WD":
		return &fsnotify.InotifyWdEntry{}, true
	case "INVENTORY":
		return &inventory.InventoryEntry{}, true
	case "IPCNS_MSG":
		return &ipc_msg.IpcMsgEntry{}, true
	case "IPCNS_SEM":
		return &ipc_sem.IpcSemEntry{}, true
	case "IPCNS_SHM":
		return &ipc_shm.IpcShmEntry{}, true
	case "IPC_VAR":
		return &ipc_var.IpcVarEntry{}, true
	case "IRMAP_CACHE":
		return &fh.IrmapCacheEntry{}, true
	case "ITIMERS":
		return &timer.ItimerEntry{}, true
	case "MEMFD_INODE":
		return &memfd.MemfdInodeEntry{}, true
	case "MM":
		return &mm.MmEntry{}, true
	case "MNTS":
		return &mnt.MntEntry{}, true
	case "NETDEV":
		return &netdev.NetDeviceEntry{}, true
	case "NETLINK_SK":
		return &sk_netlink.NetlinkSkEntry{}, true
	case "NETNS":
		return &netdev.NetnsEntry{}, true
	case "NS_FILES":
		return &ns.NsFileEntry{}, true
	case "PACKETSK":
		return &packet_sock.PacketSockEntry{}, true
	case "PIDNS":
		return &pidns.PidnsEntry{}, true
	case "PIPES":
		return &pipe.PipeEntry{}, true
	case "PIPES_DATA":
		return &pipe_data.PipeDataEntry{}, true
	case "POSIX_TIMERS":
		return &timer.PosixTimerEntry{}, true
	case "PSTREE":
		return &pstree.PstreeEntry{}, true
	case "REG_FILES":
		return &regfile.RegFileEntry{}, true
	case "REMAP_FPATH":
		return &remap_file_path.RemapFilePathEntry{}, true
	case "RLIMIT":
		return &rlimit.RlimitEntry{}, true
	case "SECCOMP":
		return &seccomp.SeccompEntry{}, true
	case "SIGACT":
		return &criu_sa.SaEntry{}, true
	case "SIGNAL":
		return &siginfo.SignalQueueEntry{}, true
	case "SIGNALFD":
		return &signalfd.SignalfdEntry{}, true
	case "SK_QUEUES":
		return &sk_packet.SkPacketEntry{}, true
	case "STATS":
		return &stats.StatsEntry{}, true
	case "TCP_STREAM":
		return &tcp_stream.TcpStreamEntry{}, true
	case "TIMENS":
		return &timens.TimensEntry{}, true
	case "TIMERFD":
		return &timerfd.TimerfdEntry{}, true
	case "TTY_DATA":
		return &tty.TtyDataEntry{}, true
	case "TTY_FILES":
		return &tty.TtyFileEntry{}, true
	case "TTY_INFO":
		return &tty.TtyInfoEntry{}, true
	case "TUNFILE":
		return &tun.TunfileEntry{}, true
	case "UNIXSK":
		return &sk_unix.UnixSkEntry{}, true
	case "USERNS":
		return &userns.UsernsEntry{}, true
	case "UTSNS":
		return &utsns.UtsnsEntry{}, true
	case "VMAS":
		return &vma.VmaEntry{}, true
	}
	return nil, false
}
