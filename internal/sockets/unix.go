package sockets

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"os"
	"path"
	"slices"
	"strings"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	skopts "github.com/checkpoint-restore/go-criu/v8/crit/images/sk-opts"
	skunix "github.com/checkpoint-restore/go-criu/v8/crit/images/sk-unix"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/idmap"
	"amber/internal/plan"
	"amber/internal/proc"
)

// Unix sockets, as CRIU's sk-unix.c has them. A socket is a files.img
// entry of type UNIXSK (UnixSkEntry): its inode, type, state, name, peer
// (by inode), shutdown state and options; the messages in its receive
// queue go to sk-queues.img (queue.go).
//
// What amber restores, and how (MakeUnix below):
//   - two sockets that are each other's peer (socketpair, or both ends of
//     an accepted connection): socketpair; the name of a connected
//     stream socket is not restored, as with criu;
//   - a socket bound to a path or an abstract name: bind, after removing
//     a stale socket file at the path; a listener: listen;
//   - a socket bound to a path deleted since: bound there again and its
//     file removed at once (unix_ghost.go);
//   - a connection not accepted yet (in a listener's backlog): its client
//     connects to the restored listener;
//   - a datagram socket connected to a named one, or to itself: connect;
//   - a socket whose peer has closed: a socketpair whose other end is
//     closed once the queue is refilled.
//
// The sockets linked by peers are one group, made at once by the first
// task that needs one of them; the others are parked for the tasks that
// hold them, as the ends of a pipe are. Descriptors in flight are
// dumped and sent again with their messages (scm.go). The dump
// refuses, naming the descriptor, a socket whose peer is outside the
// dumped tree (as criu without --ext-unix-sk; with it, see
// unix_ext.go) and a connection not accepted yet that already
// carries data.

// unixState is what a dump keeps of the unix sockets it met.
type unixState struct {
	diag   map[uint32]*unixDiag // every unix socket of the namespace
	icons  map[uint32]uint32    // client inode -> listener inode, connections not accepted yet
	dumped map[uint32]*dumpedSocket
	queues []skPacket
	// users are the maps of the tree's user namespace (nil: amber's):
	// socket files' owners are dumped as it sees them.
	users *idmap.Pair
}

// dumpedSocket is a socket of files.img and the first descriptor seen on
// it, named in errors.
type dumpedSocket struct {
	pid, fd int
	entry   *skunix.UnixSkEntry
}

// usk* are CRIU's UnixSkEntry.uflags: external, criu's service socket,
// dumped by a plugin, inherited. amber makes and restores external ones
// only (unix_ext.go).
const (
	uskExtern      = 1 << 0
	uskUnsupported = 1<<1 | 1<<2 | 1<<3
)

// sunPathMax is the size of sockaddr_un's sun_path.
const sunPathMax = 108

// siocUnixFile opens the file a unix socket is bound to, O_PATH.
const siocUnixFile = unix.SIOCPROTOPRIVATE

// unixSockets lists the unix sockets of each namespace met, on first
// use: their inodes are unique across namespaces.
func (d *Dumper) unixSockets() (*unixState, error) {
	if d.unix == nil {
		d.unix = &unixState{diag: map[uint32]*unixDiag{}, icons: map[uint32]uint32{}, dumped: map[uint32]*dumpedSocket{}, users: d.users}
	}
	u := d.unix
	for _, ns := range d.netns.unlisted("unix") {
		diag, err := listUnixSockets(ns)
		if err != nil {
			return nil, err
		}
		for ino, s := range diag {
			u.diag[ino] = s
			for _, c := range s.icons {
				u.icons[c] = ino
			}
		}
	}
	return u, nil
}

// Add records the socket behind pid's fd: unix sockets here, inet
// ones in inet.go, packet ones in packet.go, netlink ones in
// netlink.go.
func (d *Dumper) Add(pid, fd int, ino uint64, flags uint32) (uint32, fdinfo.FdTypes, error) {
	s, err := proc.CopyFd(pid, fd)
	if err != nil {
		return 0, 0, err
	}
	defer unix.Close(s)
	family, err := unix.GetsockoptInt(s, unix.SOL_SOCKET, unix.SO_DOMAIN)
	if err != nil {
		return 0, 0, fmt.Errorf("socket:[%d]: SO_DOMAIN: %w", ino, err)
	}
	if err := d.netns.check(pid, s, ino, family); err != nil {
		return 0, 0, err
	}
	switch family {
	case unix.AF_UNIX:
		id, err := d.addUnixSocket(pid, fd, s, uint32(ino), flags)
		return id, fdinfo.FdTypes_UNIXSK, err
	case unix.AF_INET, unix.AF_INET6:
		id, err := d.addInetSocket(pid, fd, s, uint32(ino), flags, family)
		return id, fdinfo.FdTypes_INETSK, err
	case unix.AF_PACKET:
		id, err := d.addPacketSocket(s, uint32(ino), flags)
		return id, fdinfo.FdTypes_PACKETSK, err
	case unix.AF_NETLINK:
		id, err := d.addNetlinkSocket(s, uint32(ino), flags)
		return id, fdinfo.FdTypes_NETLINKSK, err
	}
	return 0, 0, fmt.Errorf("socket:[%d]: %s sockets are not supported yet", ino, familyName(family))
}

// familyName names a socket family, for errors.
func familyName(f int) string {
	names := map[int]string{unix.AF_UNIX: "AF_UNIX", unix.AF_INET: "AF_INET", unix.AF_INET6: "AF_INET6", unix.AF_NETLINK: "AF_NETLINK",
		unix.AF_PACKET: "AF_PACKET", unix.AF_VSOCK: "AF_VSOCK"}
	if n, ok := names[f]; ok {
		return n
	}
	return fmt.Sprintf("family %d", f)
}

// unixShutRD is RCV_SHUTDOWN in sock_diag's UNIX_DIAG_SHUTDOWN: the
// socket is shut down for reading, by itself or by its peer.
const unixShutRD = 1

// addUnixSocket records unix socket s (a copy of pid's fd) with its
// queued messages.
func (d *Dumper) addUnixSocket(pid, fd, s int, ino, flags uint32) (uint32, error) {
	u, err := d.unixSockets()
	if err != nil {
		return 0, err
	}
	if known := u.dumped[ino]; known != nil {
		// Met again through a copy of it in flight in its own queue, or
		// in the queue of a socket in flight in its own: one file.
		return known.entry.GetId(), nil
	}
	sd := u.diag[ino]
	if sd == nil {
		return 0, fmt.Errorf("unix socket %d: not found by sock_diag in net:[%d]", ino, d.netns.curIno())
	}
	what := fmt.Sprintf("unix socket %d (%s)", ino, unixName(sd.name))
	ue, err := u.entry(s, sd, flags)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", what, err)
	}
	ue.NsId = d.netns.nsID()
	id := d.files.Add(&fdinfo.FileEntry{Type: fdinfo.FdTypes_UNIXSK.Enum(), Usk: ue})
	ue.Id = proto.Uint32(id)
	u.dumped[ino] = &dumpedSocket{pid: pid, fd: fd, entry: ue}
	if sd.state == tcpListen || (sd.typ != unix.SOCK_DGRAM && sd.state != tcpEstablished) {
		return id, nil // no queue: the kernel refuses to read one (EINVAL)
	}
	msgs, err := peekQueue(s, int(sd.typ), sd.shutdown&unixShutRD != 0)
	if err != nil {
		return 0, fmt.Errorf("%s: queued messages: %w", what, err)
	}
	for i, m := range msgs {
		scm, err := d.files.DumpInFlight(pid, m.fds)
		if err != nil {
			closePeeked(msgs[i+1:])
			return 0, fmt.Errorf("%s: queued message %d: %w", what, i, err)
		}
		u.queues = append(u.queues, skPacket{IDFor: id, Data: m.data, Scm: scm})
	}
	return id, nil
}

// entry builds the UnixSkEntry of socket s, all but its id.
func (u *unixState) entry(s int, sd *unixDiag, flags uint32) (*skunix.UnixSkEntry, error) {
	if err := u.checkDiag(sd); err != nil {
		return nil, err
	}
	opts, err := dumpSkOpts(s, unix.AF_UNIX)
	if err != nil {
		return nil, err
	}
	ue := &skunix.UnixSkEntry{
		Ino: proto.Uint32(sd.ino), Type: proto.Uint32(uint32(sd.typ)), State: proto.Uint32(uint32(sd.state)),
		Flags: proto.Uint32(flags), Uflags: proto.Uint32(0), Backlog: proto.Uint32(sd.wqlen),
		Peer: proto.Uint32(sd.peer), Fown: zeroFown(), Opts: opts, Name: append([]byte{}, sd.name...),
		Shutdown: skopts.SkShutdown(sd.shutdown & 3).Enum(),
	}
	if sd.peer == 0 && sd.state == tcpEstablished && sd.typ != unix.SOCK_DGRAM {
		if l, ok := u.icons[sd.ino]; ok {
			ue.Peer = proto.Uint32(l) // not accepted yet: restored by connecting to l
		}
	}
	if len(sd.name) > 0 && sd.name[0] != 0 {
		if err := resolveName(s, ue, u.users); err != nil {
			return nil, err
		}
	}
	return ue, nil
}

// checkDiag refuses what only the dump can see is not restorable.
func (u *unixState) checkDiag(sd *unixDiag) error {
	for _, c := range sd.icons {
		if c == 0 {
			return fmt.Errorf("a connection not accepted yet whose client is closed: not supported (as with criu)")
		}
	}
	if _, inflight := u.icons[sd.ino]; inflight && sd.wqlen != 0 {
		return fmt.Errorf("%d bytes sent on a connection the listener has not accepted yet: not supported (as with criu)", sd.wqlen)
	}
	return nil
}

// resolveName finds the file of a socket bound to a path: its mode and
// owner, and the directory of a relative name.
func resolveName(s int, ue *skunix.UnixSkEntry, users *idmap.Pair) error {
	name := pathName(ue.Name)
	fd, err := unix.IoctlRetInt(s, siocUnixFile)
	if err != nil {
		return fmt.Errorf("open the socket file of %s (SIOCUNIXFILE): %w", name, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("stat the socket file of %s: %w", name, err)
	}
	link, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd))
	if err != nil {
		return fmt.Errorf("socket file of %s: %w", name, err)
	}
	// A socket file deleted since the bind (or replaced by another file)
	// is made again at restore and deleted at once (unix_ghost.go).
	link, deleted := strings.CutSuffix(link, " (deleted)")
	if deleted {
		ue.Deleted = proto.Bool(true)
	}
	ue.FilePerms = &skunix.FilePermsEntry{Mode: proto.Uint32(st.Mode), Uid: proto.Uint32(users.InnerUid(st.Uid)), Gid: proto.Uint32(users.InnerGid(st.Gid))}
	if !strings.HasPrefix(name, "/") {
		dir, ok := strings.CutSuffix(link, "/"+path.Clean(name))
		if !ok {
			return fmt.Errorf("relative name %s does not end the socket file's path %s", name, link)
		}
		ue.NameDir = proto.String(dir)
	}
	return nil
}

// dumpSkOpts reads the socket options CRIU keeps for every socket of
// family; SO_PASSCRED and SO_PASSSEC only for unix sockets (the kernel
// refuses them on others).
func dumpSkOpts(s, family int) (*skopts.SkOptsEntry, error) {
	o := &skopts.SkOptsEntry{}
	ints := []struct {
		opt int
		set func(v int)
	}{
		{unix.SO_SNDBUF, func(v int) { o.SoSndbuf = proto.Uint32(uint32(v)) }},
		{unix.SO_RCVBUF, func(v int) { o.SoRcvbuf = proto.Uint32(uint32(v)) }},
		{unix.SO_PRIORITY, func(v int) { o.SoPriority = proto.Uint32(uint32(v)) }},
		{unix.SO_RCVLOWAT, func(v int) { o.SoRcvlowat = proto.Uint32(uint32(v)) }},
		{unix.SO_REUSEADDR, func(v int) { o.Reuseaddr = proto.Bool(v != 0) }},
	}
	if family == unix.AF_UNIX {
		ints = append(ints, []struct {
			opt int
			set func(v int)
		}{
			{unix.SO_PASSCRED, func(v int) { o.SoPasscred = proto.Bool(v != 0) }},
			{unix.SO_PASSSEC, func(v int) { o.SoPasssec = proto.Bool(v != 0) }},
		}...)
	}
	for _, i := range ints {
		v, err := unix.GetsockoptInt(s, unix.SOL_SOCKET, i.opt)
		if err != nil {
			return nil, fmt.Errorf("getsockopt %d: %w", i.opt, err)
		}
		i.set(v)
	}
	// SO_BUF_LOCK is Linux 5.14's: older kernels have none to keep.
	if v, err := unix.GetsockoptInt(s, unix.SOL_SOCKET, unix.SO_BUF_LOCK); err == nil {
		o.SoBufLock = proto.Uint32(uint32(v))
	} else if !errors.Is(err, unix.ENOPROTOOPT) {
		return nil, fmt.Errorf("getsockopt SO_BUF_LOCK: %w", err)
	}
	for _, t := range []struct {
		opt       int
		sec, usec **uint64
	}{{unix.SO_SNDTIMEO, &o.SoSndTmoSec, &o.SoSndTmoUsec}, {unix.SO_RCVTIMEO, &o.SoRcvTmoSec, &o.SoRcvTmoUsec}} {
		tv, err := unix.GetsockoptTimeval(s, unix.SOL_SOCKET, t.opt)
		if err != nil {
			return nil, fmt.Errorf("getsockopt %d: %w", t.opt, err)
		}
		*t.sec, *t.usec = proto.Uint64(uint64(tv.Sec)), proto.Uint64(uint64(tv.Usec))
	}
	filter, err := dumpFilter(s)
	if err != nil {
		return nil, err
	}
	o.SoFilter = filter
	return o, nil
}

// finishUnix checks, once every process is dumped, that every socket's
// peer was dumped too, or is recorded as external with --ext-unix-sk,
// and that the whole can be restored.
func (d *Dumper) finishUnix() error {
	u := d.unix
	if u == nil {
		return nil
	}
	set := unixSet{}
	for ino, s := range u.dumped {
		set[ino] = s.entry
	}
	if d.opts.ExtUnixSk {
		if err := d.addExternal(set); err != nil {
			return err
		}
	}
	queued := map[uint32]bool{}
	for _, q := range u.queues {
		queued[q.IDFor] = true
	}
	for _, ino := range sortedInos(u.dumped) {
		s := u.dumped[ino]
		if err := u.checkPeers(s, set, queued[s.entry.GetId()]); err != nil {
			return fmt.Errorf("pid %d fd %d: unix socket %d (%s): %w", s.pid, s.fd, ino, unixName(s.entry.GetName()), err)
		}
	}
	return nil
}

// checkPeers refuses a socket connected outside the dumped tree, or
// with a connection from outside waiting to be accepted.
func (u *unixState) checkPeers(s *dumpedSocket, set unixSet, queued bool) error {
	if p := s.entry.GetPeer(); p != 0 && set[p] == nil {
		return fmt.Errorf("connected to unix socket %d (%s) outside the dumped tree: "+
			"amber, as criu without --ext-unix-sk, does not dump one end of a connection", p, u.peerName(p))
	}
	for _, c := range u.diag[s.entry.GetIno()].icons {
		if set[c] == nil {
			return fmt.Errorf("unix socket %d outside the dumped tree waits for this listener to accept its connection: "+
				"amber, as criu without --ext-unix-sk, does not dump one end of a connection", c)
		}
	}
	return set.check(s.entry, queued)
}

func (u *unixState) peerName(ino uint32) string {
	if sd := u.diag[ino]; sd != nil {
		return unixName(sd.name)
	}
	return "closed"
}

func sortedInos(m map[uint32]*dumpedSocket) []uint32 { return slices.Sorted(maps.Keys(m)) }

// unixName shows a socket's name as ss does: "@" for the abstract
// namespace's leading NUL.
func unixName(name []byte) string {
	switch {
	case len(name) == 0:
		return "unnamed"
	case name[0] == 0:
		return "@" + strings.ReplaceAll(string(name[1:]), "\x00", "@")
	}
	return pathName(name)
}

// unixSet is the unix sockets of a dump, by inode.
type unixSet map[uint32]*skunix.UnixSkEntry

// unixSockets collects the unix sockets of files.img.
func unixSockets(idx map[uint32]*fdinfo.FileEntry) unixSet {
	set := unixSet{}
	for _, e := range idx {
		if s := e.GetUsk(); e.GetType() == fdinfo.FdTypes_UNIXSK && s != nil {
			set[s.GetIno()] = s
		}
	}
	return set
}

// partner returns s's peer if that peer has s as its peer too: the two
// are made by one socketpair.
func (u unixSet) partner(s *skunix.UnixSkEntry) *skunix.UnixSkEntry {
	if p := u[s.GetPeer()]; p != nil && p != s && p.GetPeer() == s.GetIno() {
		return p
	}
	return nil
}

// semiClosed reports whether s was connected to a peer that has closed
// since: s is made as one end of a socketpair whose other end is closed.
// A named datagram socket in that state is taken for one that others
// connected to (connect makes both ends ESTABLISHED): it is made alone.
func (u unixSet) semiClosed(s *skunix.UnixSkEntry) bool {
	named := len(s.GetName()) > 0
	return s.GetPeer() == 0 && s.GetState() == tcpEstablished && !(s.GetType() == unix.SOCK_DGRAM && named)
}

// connectsTo returns the socket that s connects to at restore by its
// name: the named peer of a datagram socket, or the listener of a
// connection not accepted yet.
func (u unixSet) connectsTo(s *skunix.UnixSkEntry) *skunix.UnixSkEntry {
	if p := u[s.GetPeer()]; p != nil && u.partner(s) == nil {
		return p
	}
	return nil
}

// check refuses a socket of the images that amber cannot restore; queued
// tells whether messages wait in its receive queue.
func (u unixSet) check(s *skunix.UnixSkEntry, queued bool) error {
	typ, state := s.GetType(), s.GetState()
	switch {
	case typ != unix.SOCK_STREAM && typ != unix.SOCK_DGRAM && typ != unix.SOCK_SEQPACKET:
		return fmt.Errorf("socket type %d: not supported", typ)
	case state != tcpEstablished && state != tcpClose && state != tcpListen:
		return fmt.Errorf("state %d: not supported", state)
	case s.GetUflags()&uskUnsupported != 0:
		return fmt.Errorf("a service, plugin's or inherited socket (uflags %#x): not supported", s.GetUflags())
	case s.GetUflags()&uskExtern != 0:
		return fmt.Errorf("an external socket (uflags %#x) held by a task of the tree: it is outside the tree", s.GetUflags())
	case state == tcpListen && len(s.GetName()) == 0:
		return fmt.Errorf("a listener without a name")
	}
	if len(s.GetName()) > 0 {
		if _, _, err := sockaddr(s); err != nil {
			return err
		}
	}
	if err := u.checkPeer(s); err != nil {
		return err
	}
	if queued && u.partner(s) == nil && !u.semiClosed(s) && (typ != unix.SOCK_DGRAM || len(s.GetName()) == 0) {
		return fmt.Errorf("messages queued, but no peer to send them again from")
	}
	return nil
}

// checkPeer refuses a peer that cannot be connected again.
func (u unixSet) checkPeer(s *skunix.UnixSkEntry) error {
	p := u[s.GetPeer()]
	switch {
	case s.GetPeer() == 0:
		if u.semiClosed(s) && s.GetType() != unix.SOCK_DGRAM && s.GetShutdown() != skopts.SkShutdown_BOTH {
			return fmt.Errorf("connected, but its peer is gone and it is not shut down: a dangling connection")
		}
		return nil
	case p == nil:
		return fmt.Errorf("its peer, unix socket %d, is not in the images: an external socket is not supported", s.GetPeer())
	case p.GetUflags()&uskExtern != 0:
		return checkExternal(s, p)
	case u.partner(s) != nil:
		return nil
	case len(p.GetName()) == 0 || (p.GetDeleted() && !boundAgain(p)):
		return fmt.Errorf("connected to unix socket %d, which has no name to connect to again", p.GetIno())
	case s.GetType() == unix.SOCK_DGRAM && p.GetPeer() != 0 && p != s:
		// The kernel refuses to connect s to a socket connected to
		// another: p would have to connect after s. A socket connected
		// to itself connects once, to its own name.
		return fmt.Errorf("connected to unix socket %d, itself connected to unix socket %d: not supported yet", p.GetIno(), p.GetPeer())
	case s.GetType() != unix.SOCK_DGRAM && (p.GetState() != tcpListen || s.GetState() != tcpEstablished):
		return fmt.Errorf("a %s connection to unix socket %d, which is not connected back nor listening", sockType(s.GetType()), p.GetIno())
	}
	return nil
}

// boundAgain tells whether the restore binds s to its name: not a
// connected stream or seqpacket socket, whose name is its listener's.
func boundAgain(s *skunix.UnixSkEntry) bool {
	return len(s.GetName()) > 0 && (s.GetType() == unix.SOCK_DGRAM || s.GetState() != tcpEstablished)
}

func sockType(t uint32) string {
	switch t {
	case unix.SOCK_STREAM:
		return "stream"
	case unix.SOCK_DGRAM:
		return "datagram"
	case unix.SOCK_SEQPACKET:
		return "seqpacket"
	}
	return fmt.Sprintf("type %d", t)
}

// group lists the sockets linked to s by peers, s included, by file id.
func (u unixSet) group(s *skunix.UnixSkEntry, peersOf map[uint32][]uint32) []*skunix.UnixSkEntry {
	in := map[uint32]bool{s.GetIno(): true}
	for todo := []uint32{s.GetIno()}; len(todo) > 0; {
		ino := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		linked := peersOf[ino]
		if peer := u[ino].GetPeer(); u[peer] != nil {
			linked = append(slices.Clip(linked), peer)
		}
		for _, o := range linked {
			if !in[o] && u[o].GetUflags()&uskExtern == 0 { // not made: outside the tree
				in[o] = true
				todo = append(todo, o)
			}
		}
	}
	var out []*skunix.UnixSkEntry
	for ino := range in {
		out = append(out, u[ino])
	}
	slices.SortFunc(out, func(a, b *skunix.UnixSkEntry) int { return int(a.GetId()) - int(b.GetId()) })
	return out
}

// peersOf lists, for each socket, the sockets that name it as their peer.
func (u unixSet) peersOf() map[uint32][]uint32 {
	out := map[uint32][]uint32{}
	for ino, s := range u {
		if s.GetPeer() != 0 {
			out[s.GetPeer()] = append(out[s.GetPeer()], ino)
		}
	}
	return out
}

// sockaddr is the struct sockaddr_un of a named socket, as it was bound,
// and, for a relative path, the directory it is relative to.
func sockaddr(s *skunix.UnixSkEntry) (addr []byte, dir string, err error) {
	name := s.GetName()
	if len(name) > 0 && name[0] != 0 {
		name = []byte(pathName(name)) // the kernel adds the NUL
		if name[0] != '/' {
			if dir = s.GetNameDir(); dir == "" {
				return nil, "", fmt.Errorf("relative name %s without its directory", name)
			}
		}
	}
	if len(name) > sunPathMax {
		return nil, "", fmt.Errorf("name %s longer than %d bytes", unixName(name), sunPathMax)
	}
	b := binary.LittleEndian.AppendUint16(nil, unix.AF_UNIX)
	return append(b, name...), dir, nil
}

// socketPath is the path a socket is bound to, "" for an abstract one.
func socketPath(s *skunix.UnixSkEntry) string {
	name := s.GetName()
	switch {
	case len(name) == 0 || name[0] == 0:
		return ""
	case name[0] == '/':
		return pathName(name)
	}
	return path.Join(s.GetNameDir(), pathName(name))
}

// pathName is a path name without the NUL the kernel keeps after it.
func pathName(name []byte) string { return strings.TrimRight(string(name), "\x00") }

// atName plans call, which passes the sockaddr_un of s (its address and
// length) to the kernel to reach s: from the directory of s's relative
// name, or through the descriptor of a ghost socket's deleted file.
func (m *unixMaker) atName(s *skunix.UnixSkEntry, call func(addr, addrlen uint64)) error {
	b := m.p.b
	if g, ok := m.ghosts[s.GetIno()]; ok {
		addr := ghostAddr(g)
		call(b.Bytes(addr), uint64(len(addr)))
		return nil
	}
	addr, dir, err := sockaddr(s)
	if err != nil {
		return err
	}
	if dir != "" {
		if st, err := m.p.in.Stat(dir); err != nil || !st.IsDir() {
			return fmt.Errorf("the directory %s of its relative name is gone since the dump", dir)
		}
	}
	m.fromDir(dir, func() { call(b.Bytes(addr), uint64(len(addr))) })
	return nil
}

// fromDir plans call from directory dir ("": where the task is): the
// task goes there and back (fchdir to an O_PATH descriptor of where it
// was).
func (m *unixMaker) fromDir(dir string, call func()) {
	b := m.p.b
	if dir == "" {
		call()
		return
	}
	here := b.Open("the current directory, to come back", ".", unix.O_PATH|unix.O_DIRECTORY, 0)
	b.Call("go to "+dir, unix.SYS_CHDIR, b.String(dir))
	call()
	b.Call("come back from "+dir, unix.SYS_FCHDIR, uint64(here))
	b.Close(here)
}

// unixMaker plans making one group of sockets in a task.
type unixMaker struct {
	p      *Plan
	set    unixSet
	queues map[uint32][][]byte   // by file id
	scm    map[uint32][][]uint32 // descriptors the messages carry, by file id
	fds    map[uint32]int        // made sockets, by inode
	spare  map[uint32]int        // other end of a semi-closed socket's pair
	ghosts map[uint32]int        // O_PATH descriptors of deleted sockets' files, by inode
}

// MakeUnix makes the group of the socket of file e, refills every queue,
// connects and configures them, parks all but e's and returns e's.
func (p *Plan) MakeUnix(e *fdinfo.FileEntry) (int, error) {
	if p.unix == nil {
		// Made once per plan: a process may hold thousands of sockets.
		p.unix = unixSockets(p.in.Files)
		p.unixPeers = p.unix.peersOf()
	}
	set := p.unix
	me := e.GetUsk()
	if me == nil {
		return 0, fmt.Errorf("file id %d: UNIXSK without its unix_sk_entry", e.GetId())
	}
	x := p.in
	m := &unixMaker{p: p, set: set, queues: x.SkQueues, scm: x.SkScm, fds: map[uint32]int{}, spare: map[uint32]int{}, ghosts: map[uint32]int{}}
	g := set.group(me, p.unixPeers)
	if err := set.checkExtAllowed(g, p.in.ExtUnixSk); err != nil {
		return 0, err
	}
	for _, s := range g {
		if err := set.check(s, len(m.queues[s.GetId()]) > 0); err != nil {
			return 0, fmt.Errorf("unix socket %d (%s): %w", s.GetIno(), unixName(s.GetName()), err)
		}
	}
	for _, step := range []func(*skunix.UnixSkEntry) error{m.create, m.bind, m.listen, m.refill, m.closeSpare, m.connect, m.shutdown, m.options} {
		for _, s := range g {
			if err := step(s); err != nil {
				return 0, fmt.Errorf("unix socket %d (%s): %w", s.GetIno(), unixName(s.GetName()), err)
			}
		}
	}
	m.closeGhosts()
	for _, s := range g {
		if s != me {
			p.fd.Park(s.GetId(), m.fds[s.GetIno()])
		}
	}
	return m.fds[me.GetIno()], nil
}

func (m *unixMaker) what(s *skunix.UnixSkEntry) string {
	return fmt.Sprintf("unix socket %d (%s)", s.GetIno(), unixName(s.GetName()))
}

// create makes s: with its partner by socketpair, or alone. Every socket
// is made non-blocking, so that no call of the plan can block; options
// sets the dumped flags last.
func (m *unixMaker) create(s *skunix.UnixSkEntry) error {
	if _, done := m.fds[s.GetIno()]; done {
		return nil
	}
	typ := uint64(s.GetType()) | unix.SOCK_NONBLOCK
	q := m.set.partner(s)
	if q == nil && !m.set.semiClosed(s) {
		fd, err := m.p.createIn(s.NsId, "make "+m.what(s), unix.SYS_SOCKET, unix.AF_UNIX, typ, 0)
		if err != nil {
			return err
		}
		m.fds[s.GetIno()] = m.p.b.MoveAbove(fd, m.p.safe)
		return nil
	}
	b := m.p.b
	var a, other int
	what := fmt.Sprintf("make a socketpair for %s", m.what(s))
	err := m.p.inNetns(s.NsId, what, func() {
		a = b.Next()
		b.Call(what, unix.SYS_SOCKETPAIR, unix.AF_UNIX, typ, 0, b.Bytes(make([]byte, 8)))
		b.Take()
		other = b.Take()
	})
	if err != nil {
		return err
	}
	m.fds[s.GetIno()] = b.MoveAbove(a, m.p.safe)
	if q != nil {
		m.fds[q.GetIno()] = b.MoveAbove(other, m.p.safe)
	} else {
		m.spare[s.GetIno()] = b.MoveAbove(other, m.p.safe)
	}
	return nil
}

// bind gives s its name; a connected stream socket keeps none (as with
// criu: its name is its listener's). A stale socket file at the path is
// removed first; any other file there is an error.
func (m *unixMaker) bind(s *skunix.UnixSkEntry) error {
	if !boundAgain(s) {
		return nil
	}
	if s.GetDeleted() {
		return m.bindGhost(s)
	}
	b, fd := m.p.b, m.fds[s.GetIno()]
	p := socketPath(s)
	if p != "" {
		if err := m.removeStale(p); err != nil {
			return err
		}
		m.p.setBound(p, true)
	}
	err := m.atName(s, func(addr, addrlen uint64) {
		b.Call("bind "+m.what(s), unix.SYS_BIND, uint64(fd), addr, addrlen)
	})
	if err != nil {
		return err
	}
	if perms := s.GetFilePerms(); p != "" && perms != nil {
		b.Call("chmod socket file "+p, unix.SYS_FCHMODAT, plan.AtFdcwd, b.String(p), uint64(perms.GetMode()&0o7777), 0)
		b.Privileged("chown socket file "+p, unix.SYS_FCHOWNAT, plan.AtFdcwd, b.String(p), uint64(perms.GetUid()), uint64(perms.GetGid()), unix.AT_SYMLINK_NOFOLLOW)
	}
	return nil
}

// removeStale plans removing the socket file a dumped socket left at p.
func (m *unixMaker) removeStale(p string) error {
	if there, ok := m.p.bound[p]; ok && !there {
		return nil
	}
	st, err := m.p.in.Stat(p)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("socket file %s: %w", p, err)
	}
	if st.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("cannot bind to %s: a file that is not a socket is there", p)
	}
	m.p.b.Call("remove stale socket file "+p, unix.SYS_UNLINKAT, plan.AtFdcwd, m.p.b.String(p), 0)
	m.p.setBound(p, false)
	return nil
}

func (m *unixMaker) listen(s *skunix.UnixSkEntry) error {
	if s.GetState() == tcpListen {
		m.p.b.Call(fmt.Sprintf("listen on %s, backlog %d", m.what(s), s.GetBacklog()), unix.SYS_LISTEN,
			uint64(m.fds[s.GetIno()]), uint64(s.GetBacklog()))
	}
	return nil
}

// refill sends s's queued messages again, in order, from its partner,
// from the spare end of its pair, or from a fresh socket to its name.
// The sender's buffer is made as large as can be first, so that the
// messages that fitted at the dump fit again.
func (m *unixMaker) refill(s *skunix.UnixSkEntry) error {
	msgs := m.queues[s.GetId()]
	if len(msgs) == 0 {
		return nil
	}
	b := m.p.b
	from, temp := m.senderOf(s)
	if temp {
		var err error
		if from, err = m.p.createIn(s.NsId, "make a socket to refill "+m.what(s), unix.SYS_SOCKET, unix.AF_UNIX, uint64(s.GetType()), 0); err != nil {
			return err
		}
	}
	m.setInt(from, unix.SO_SNDBUFFORCE, maxSockBuf, "grow the send buffer to refill "+m.what(s))
	scm := make([][]int, len(msgs))
	for i := range msgs {
		var err error
		if scm[i], err = m.scmFds(s.GetId(), i); err != nil {
			return err
		}
	}
	send := func(addr, addrlen uint64) {
		for i, msg := range msgs {
			what := fmt.Sprintf("queue message %d (%d bytes) on %s", i, len(msg), m.what(s))
			if len(scm[i]) > 0 {
				m.sendScm(from, msg, scm[i], addr, addrlen, what)
				continue
			}
			b.Call(what, unix.SYS_SENDTO, uint64(from), b.Bytes(msg), uint64(len(msg)), unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL, addr, addrlen)
		}
	}
	if !temp {
		send(0, 0)
		return nil
	}
	if err := m.atName(s, send); err != nil {
		return err
	}
	b.Close(from)
	return nil
}

// maxSockBuf is the largest buffer size setsockopt takes (it doubles it).
const maxSockBuf = 1<<30 - 1

// senderOf is the descriptor that sends s's messages again, or temp if a
// fresh socket must send them to s's name.
func (m *unixMaker) senderOf(s *skunix.UnixSkEntry) (fd int, temp bool) {
	if q := m.set.partner(s); q != nil {
		return m.fds[q.GetIno()], false
	}
	if fd, ok := m.spare[s.GetIno()]; ok {
		return fd, false
	}
	return -1, true
}

// closeSpare closes the other end of a semi-closed socket's pair: s's
// peer is gone, as it was at the dump.
func (m *unixMaker) closeSpare(s *skunix.UnixSkEntry) error {
	if fd, ok := m.spare[s.GetIno()]; ok {
		m.p.b.Close(fd)
		delete(m.spare, s.GetIno())
	}
	return nil
}

// connect connects s to the socket it was connected to by name: after
// the queues are refilled, since a connected datagram socket takes
// messages from its peer only.
func (m *unixMaker) connect(s *skunix.UnixSkEntry) error {
	p := m.set.connectsTo(s)
	if p == nil {
		return nil
	}
	return m.atName(p, func(addr, addrlen uint64) {
		m.p.b.Call(fmt.Sprintf("connect %s to %s", m.what(s), m.what(p)), unix.SYS_CONNECT,
			uint64(m.fds[s.GetIno()]), addr, addrlen)
	})
}

// shutdown shuts s down as it was (SHUT_RD, SHUT_WR or SHUT_RDWR are the
// image's READ, WRITE and BOTH less one).
func (m *unixMaker) shutdown(s *skunix.UnixSkEntry) error {
	if how := s.GetShutdown(); how != skopts.SkShutdown_NONE {
		m.p.b.Call(fmt.Sprintf("shut down %s (%v)", m.what(s), how), unix.SYS_SHUTDOWN,
			uint64(m.fds[s.GetIno()]), uint64(how)-1)
	}
	return nil
}

// options sets the dumped socket options and status flags.
func (m *unixMaker) options(s *skunix.UnixSkEntry) error {
	fd, o := m.fds[s.GetIno()], s.GetOpts()
	if v := o.GetSoSndbuf(); v != 0 {
		m.setInt(fd, unix.SO_SNDBUFFORCE, v/2, "set the send buffer of "+m.what(s))
	}
	if v := o.GetSoRcvbuf(); v != 0 {
		m.setInt(fd, unix.SO_RCVBUFFORCE, v/2, "set the receive buffer of "+m.what(s))
	}
	if o.SoBufLock != nil {
		m.setInt(fd, unix.SO_BUF_LOCK, o.GetSoBufLock(), "set SO_BUF_LOCK of "+m.what(s))
	}
	for _, f := range []struct {
		on  bool
		opt int
	}{{o.GetSoPasscred(), unix.SO_PASSCRED}, {o.GetSoPasssec(), unix.SO_PASSSEC}} {
		if f.on {
			m.setInt(fd, f.opt, 1, fmt.Sprintf("set option %d of %s", f.opt, m.what(s)))
		}
	}
	if v := o.GetSoPriority(); v != 0 {
		m.setInt(fd, unix.SO_PRIORITY, v, "set SO_PRIORITY of "+m.what(s))
	}
	if v := o.GetSoRcvlowat(); v > 1 {
		m.setInt(fd, unix.SO_RCVLOWAT, v, "set SO_RCVLOWAT of "+m.what(s))
	}
	m.setTimeout(fd, unix.SO_SNDTIMEO, o.GetSoSndTmoSec(), o.GetSoSndTmoUsec(), m.what(s))
	m.setTimeout(fd, unix.SO_RCVTIMEO, o.GetSoRcvTmoSec(), o.GetSoRcvTmoUsec(), m.what(s))
	planFilter(m.p.b, fd, o.GetSoFilter(), m.what(s))
	m.p.b.Call(fmt.Sprintf("set status flags %#x on %s", s.GetFlags()&unix.O_NONBLOCK, m.what(s)), unix.SYS_FCNTL,
		uint64(fd), unix.F_SETFL, uint64(s.GetFlags()&unix.O_NONBLOCK))
	return nil
}

// setInt plans setsockopt(fd, SOL_SOCKET, opt, &v, 4).
func (m *unixMaker) setInt(fd, opt int, v uint32, what string) {
	setsockoptInt(m.p.b, fd, unix.SOL_SOCKET, opt, v, what)
}

// setTimeout plans setting a non-zero SO_SNDTIMEO or SO_RCVTIMEO.
func (m *unixMaker) setTimeout(fd, opt int, sec, usec uint64, what string) {
	if sec == 0 && usec == 0 {
		return
	}
	b := m.p.b
	tv := binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint64(nil, sec), usec)
	b.Call(fmt.Sprintf("set timeout %d of %s", opt, what), unix.SYS_SETSOCKOPT, uint64(fd), unix.SOL_SOCKET, uint64(opt), b.Bytes(tv), 16)
}
