package sockets

import (
	"fmt"
	"os"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/fown"
	skopts "github.com/checkpoint-restore/go-criu/v8/crit/images/sk-opts"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/idmap"
	"amber/internal/image"
	"amber/internal/plan"
)

// How sockets sit in a task's descriptor table, which package files
// owns: files meets a socket among the descriptors and hands it here,
// through a Dumper at dump and a Plan at restore. A socket's queue may
// carry descriptors of any kind of file (SCM_RIGHTS): the socket code
// asks files for those through Files and Planner, which files
// implements.

// Files is the descriptor table of a dump (package files), as the
// sockets of it see it.
type Files interface {
	// Add appends e to files.img under the next file id, which it
	// returns; e's kind-specific entry takes the same id.
	Add(e *fdinfo.FileEntry) uint32
	// DumpInFlight records the files behind fds, amber's copies of the
	// descriptors one message queued on a socket of pid carries, and
	// returns their file ids. The copies stay open until
	// Dumper.Release.
	DumpInFlight(pid int, fds []int) ([]uint32, error)
}

// DumpOptions are the user's settings that change which sockets may be
// dumped.
type DumpOptions struct {
	// TCPEstablished dumps established TCP connections in repair mode
	// (--tcp-established); without it they refuse the dump.
	TCPEstablished bool
	// TCPClose dumps TCP connections without their state (--tcp-close):
	// they are restored closed.
	TCPClose bool
	// TCPSkipInFlight leaves out connections waiting to be accepted
	// (--tcp-skip-in-flight): the listener is restored with none, as
	// criu does; without it the listener is refused.
	TCPSkipInFlight bool
	// ExtUnixSk records a datagram socket outside the tree that a socket
	// of the tree is connected to (--ext-unix-sk); without it such a
	// socket is refused.
	ExtUnixSk bool
	// Warnf reports what the dump loses without failing (nil: nothing).
	Warnf func(format string, args ...any)
}

// SetUserMaps says the tree is in a user namespace of its own with these
// maps: the owners of socket files are dumped as it sees them, as CRIU
// does (its restore sets them from inside the namespace).
func (d *Dumper) SetUserMaps(users *idmap.Pair) { d.users = users }

// Dumper collects the sockets of every process of a dump.
type Dumper struct {
	users *idmap.Pair // SetUserMaps
	files Files
	opts  DumpOptions
	unix  *unixState // unix sockets (unix.go), for Finish
	inet  *inetDump  // inet sockets (inet_diag.go, tcp.go), for Finish and Release
	// packet and netlink are what sock_diag told of the namespace's
	// packet and netlink sockets, asked once (packet.go, netlink.go).
	packet  map[uint32]*packetDiag
	netlink map[uint32]*netlinkDiag
	// packetIDs are the file ids of the packet sockets dumped, by
	// inode: a process mapping one's ring names it by its id.
	packetIDs map[uint32]uint32
	netns     sockNetns // the namespace of the sockets (netns.go)
}

// NewDumper returns a dumper adding the sockets it meets to files.
func NewDumper(files Files, opts DumpOptions) *Dumper {
	return &Dumper{files: files, opts: opts}
}

// SetNetnsLookup tells the dumper the id in the images of each network
// namespace a socket may belong to, by the namespace's inode: those the
// tree's tasks are in. Without it, every socket must be in one
// namespace, and the images name none.
func (d *Dumper) SetNetnsLookup(f func(ino uint64) (uint32, bool)) { d.netns.lookup = f }

// Finish is called once every process is dumped: it checks that every
// unix socket's peer was dumped too and writes sk-queues.img and the
// tcp-stream images.
func (d *Dumper) Finish(dir image.Dir) error {
	if err := d.finishUnix(); err != nil {
		return err
	}
	var queues []skPacket
	if d.unix != nil {
		queues = d.unix.queues
	}
	if err := writeSkQueues(dir, queues); err != nil {
		return err
	}
	return d.inet.writeStreams(dir)
}

// zeroFown is the owner entry of a socket before the dump reads its
// owner (files' dumpFown fills it in).
func zeroFown() *fown.FownEntry {
	z := proto.Uint32(0)
	return &fown.FownEntry{Uid: z, Euid: z, Signum: z, PidType: z, Pid: z}
}

// Planner is the plan of a task's descriptor table (package files) that
// sockets are made in.
type Planner interface {
	// Builder is the plan being written.
	Builder() *plan.Builder
	// SafeFd is the lowest descriptor number above every target one: a
	// descriptor kept for later is parked from there.
	SafeFd() int
	// Placed returns the descriptor file id was made at, its target
	// number, if it is there yet.
	Placed(id uint32) (int, bool)
	// Have returns a spare descriptor of file id the task has:
	// inherited, or parked.
	Have(id uint32) (int, bool)
	// Make makes file id, of any kind, in the task (or takes it from a
	// task that has it) and returns a descriptor of it.
	Make(id uint32) (int, error)
	// Park keeps fd open as file id, for later descriptors of the task
	// or for other tasks.
	Park(id uint32, fd int)
	// DeferToEnd has f run once every descriptor of the task is at its
	// number.
	DeferToEnd(f func() error)
	// Create plans a call that makes one new descriptor and returns its
	// number.
	Create(what string, nr uintptr, args ...uint64) int
}

// RestoreInput is what making the sockets of a task needs.
type RestoreInput struct {
	// Files is files.img, by file id.
	Files map[uint32]*fdinfo.FileEntry
	// Stat looks files up as they are now (os.Stat outside tests).
	Stat func(path string) (os.FileInfo, error)
	// SkQueues are the queued messages by socket file id
	// (sk-queues.img), and SkScm the file ids of the descriptors each
	// carries (nil: none).
	SkQueues map[uint32][][]byte
	SkScm    map[uint32][][]uint32
	// TCPStreams are the TCP connections (tcp-stream-INO.img), by
	// socket inode.
	TCPStreams map[uint32]*TCPStream
	// ExtUnixSk connects sockets to the external sockets of the images
	// by name (--ext-unix-sk); without it they are refused.
	ExtUnixSk bool
	// TCPEstablished restores established TCP connections
	// (--tcp-established); without it they are refused.
	TCPEstablished bool
	// TCPClose restores TCP connections closed (--tcp-close), whatever
	// the images hold of them.
	TCPClose bool
	// OwnNetns is the id of the task's network namespace (0: unknown),
	// and NetnsPid names a task of the tree in network namespace id, by
	// the PID the task sees, once that namespace is made (nil: every
	// socket is made in the task's). A socket whose ns_id is another
	// namespace's is made there.
	OwnNetns uint32
	NetnsPid func(id uint32) (int, bool)
}

// Plan makes the sockets of one task's descriptor table.
type Plan struct {
	fd   Planner
	b    *plan.Builder
	safe int
	in   *RestoreInput
	// unix is the unix sockets of the images and unixPeers the sockets
	// naming each as their peer (MakeUnix).
	unix      unixSet
	unixPeers map[uint32][]uint32
	// bound are the paths the plan binds sockets to (true) or removes
	// stale socket files from (false), which Stat cannot see yet.
	bound map[string]bool
	// making are the files in flight being made to be sent (scm.go),
	// against a loop of sockets in each other's queues.
	making map[uint32]bool
	tcp    TCPLeft
}

// NewPlan returns the socket plan of the descriptor table fd plans.
func NewPlan(fd Planner, in *RestoreInput) *Plan {
	return &Plan{fd: fd, b: fd.Builder(), safe: fd.SafeFd(), in: in, making: map[uint32]bool{}}
}

// TCPLeft are the TCP sockets a task's plan leaves for amber to finish
// once every task is restored (EndTCPRepair, CloseTCP).
type TCPLeft struct {
	// Repair are the file ids of the TCP connections the task made in
	// repair mode.
	Repair []uint32
	// Shut are the closed TCP sockets the task holds that must be shut
	// down (a connection --tcp-close restores closed, a closed socket
	// that was shut down), by file id: a plan cannot, as shutdown fails
	// on them.
	Shut map[uint32]skopts.SkShutdown
	// Ended are the file ids of the closed TCP sockets whose connection
	// had ended, which CloseTCP connects again in repair mode to give
	// them their peer's address and their unread bytes.
	Ended []uint32
}

// TCP returns the TCP sockets the plan leaves for after the restore.
func (p *Plan) TCP() TCPLeft { return p.tcp }

// create plans a call that makes one new descriptor and returns its
// number.
func (p *Plan) create(what string, nr uintptr, args ...uint64) int {
	return p.fd.Create(what, nr, args...)
}

// createIn plans a call that makes one new socket in network namespace
// ns (the ns_id of its entry; nil: the task's) and returns its number.
func (p *Plan) createIn(ns *uint32, what string, nr uintptr, args ...uint64) (int, error) {
	var fd int
	err := p.inNetns(ns, what, func() { fd = p.create(what, nr, args...) })
	return fd, err
}

// inNetns plans mk, which makes sockets (what, for messages), in
// network namespace ns (nil: the task's). A socket belongs for good to
// the namespace it was made in, and what is done with it afterwards
// (bind, connect, an abstract name, an interface) is done in its
// namespace, whatever the task's: so only the making needs the task in
// another namespace, which it enters through a pidfd of a task there
// and leaves again through its own namespace's file, as CRIU's tasks
// switch to a socket's namespace to make it.
func (p *Plan) inNetns(ns *uint32, what string, mk func()) error {
	if ns == nil || p.in.NetnsPid == nil || *ns == p.in.OwnNetns {
		mk()
		return nil
	}
	pid, ok := p.in.NetnsPid(*ns)
	if !ok {
		return fmt.Errorf("%s: its network namespace (id %d) has no task made yet: not supported", what, *ns)
	}
	b := p.b
	self := b.Open("the task's own network namespace", "/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	pidfd := b.Next()
	b.Call(fmt.Sprintf("pidfd_open pid %d, of network namespace %d", pid, *ns), unix.SYS_PIDFD_OPEN, uint64(pid), 0)
	b.Take()
	b.Call(fmt.Sprintf("enter network namespace %d to %s", *ns, what), unix.SYS_SETNS, uint64(pidfd), unix.CLONE_NEWNET)
	mk()
	b.Call(fmt.Sprintf("go back to network namespace %d", p.in.OwnNetns), unix.SYS_SETNS, uint64(self), unix.CLONE_NEWNET)
	b.Close(pidfd)
	b.Close(self)
	return nil
}
