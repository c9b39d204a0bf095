package sockets

import (
	"encoding/binary"
	"fmt"
	"maps"
	"math/bits"
	"strings"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	sknetlink "github.com/checkpoint-restore/go-criu/v8/crit/images/sk-netlink"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
)

// Netlink sockets (AF_NETLINK), as CRIU's sk-netlink.c has them: a
// files.img entry of type NETLINKSK (NetlinkSkEntry) with the socket's
// protocol, the port id it is bound to, the multicast groups it
// listens to (32-bit words of the group bitmap, group g being bit g-1),
// and, if connected, the port id and group it sends to by default; all
// from sock_diag (linux/netlink_diag.h). sock_diag lists only sockets
// with a port id or groups: one it does not know is unbound and
// unconnected, and its protocol comes from SO_PROTOCOL.
//
// What amber restores, and how (MakeNetlink below): socket, bind to the
// port id with the first 32 groups, NETLINK_ADD_MEMBERSHIP for the
// groups above 32 (and for every group of a socket that joined groups
// without a port id), connect, the socket-level options, the status
// flags. criu refuses groups above 32 and binds another port id when
// the dumped one is taken; amber fails the restore then, naming the
// socket, since whoever talks to the port would reach someone else.
//
// The dump refuses, naming the descriptor: a socket with messages
// waiting to be read (the kernel's answers would be lost, as criu
// refuses), one in the middle of a dump (NDIAG_FLAG_CB_RUNNING: the
// rest of the answer would be lost), and one connected to a group above
// 32, which connect cannot name. The SOL_NETLINK options (NETLINK_PKTINFO,
// NETLINK_EXT_ACK, ...) have no field in CRIU's image: they are dropped
// with a warning, as criu drops them without one.

// Requests, attributes and flags of linux/netlink_diag.h.
const (
	netlinkDiagReqSize = 20 // struct netlink_diag_req
	netlinkDiagMsgSize = 28 // struct netlink_diag_msg
	netlinkDiagGroups  = 1
	netlinkDiagFlags   = 4
	ndiagShowGroups    = 0x2
	ndiagShowFlags     = 0x8
	ndiagProtoAll      = 0xff
	ndiagFlagCbRunning = 0x1

	netlinkConnected = 1 // NETLINK_CONNECTED, the socket's state
	sockaddrNlSize   = 12
)

// netlinkDiag is what sock_diag tells of one netlink socket.
type netlinkDiag struct {
	ino                         uint32
	protocol, state             uint8
	portid, dstPortid, dstGroup uint32
	groups                      []uint32 // the group bitmap in 32-bit words, trailing zero words left out
	flags                       uint32   // NDIAG_FLAG_*
}

// listNetlinkSockets returns the netlink sockets of network namespace
// ns that sock_diag knows, by inode.
func listNetlinkSockets(ns *netnsRef) (map[uint32]*netlinkDiag, error) {
	out := map[uint32]*netlinkDiag{}
	err := sockDiagDump(ns, netlinkDiagRequest(), func(body []byte) error {
		d, err := parseNetlinkDiag(body)
		if err == nil {
			out[d.ino] = d
		}
		return err
	})
	return out, err
}

// netlinkDiagRequest is a netlink dump request for the netlink sockets
// of every protocol, with their groups and flags.
func netlinkDiagRequest() []byte {
	b, r := diagRequest(1, netlinkDiagReqSize)
	le := binary.LittleEndian
	r[0], r[1] = unix.AF_NETLINK, ndiagProtoAll
	le.PutUint32(r[8:], ndiagShowGroups|ndiagShowFlags)
	le.PutUint32(r[12:], ^uint32(0)) // no cookie
	le.PutUint32(r[16:], ^uint32(0))
	return b
}

// parseNetlinkDiag decodes one struct netlink_diag_msg and its
// attributes.
func parseNetlinkDiag(b []byte) (*netlinkDiag, error) {
	le := binary.LittleEndian
	if len(b) < netlinkDiagMsgSize {
		return nil, fmt.Errorf("sock_diag: netlink_diag_msg of %d bytes", len(b))
	}
	d := &netlinkDiag{protocol: b[2], state: b[3], portid: le.Uint32(b[4:]), dstPortid: le.Uint32(b[8:]),
		dstGroup: le.Uint32(b[12:]), ino: le.Uint32(b[16:])}
	for a := b[netlinkDiagMsgSize:]; len(a) >= 4; {
		l, typ := int(le.Uint16(a)), le.Uint16(a[2:])&nlaTypeMask
		if l < 4 || l > len(a) {
			return nil, fmt.Errorf("sock_diag: netlink socket %d: attribute of %d bytes", d.ino, l)
		}
		switch v := a[4:l]; {
		case typ == netlinkDiagGroups:
			// An array of unsigned long; on a little-endian machine its
			// 32-bit words are in group order.
			for ; len(v) >= 4; v = v[4:] {
				d.groups = append(d.groups, le.Uint32(v))
			}
			for len(d.groups) > 0 && d.groups[len(d.groups)-1] == 0 {
				d.groups = d.groups[:len(d.groups)-1]
			}
		case typ == netlinkDiagFlags && len(v) >= 4:
			d.flags = le.Uint32(v)
		}
		a = a[min(nlAlign(l), len(a)):]
	}
	return d, nil
}

// netlinkName names a netlink socket in errors and in the plan:
// "netlink socket 1234 (protocol 15, port 4321)"; who is the inode at
// dump, the file id at restore.
func netlinkName(who string, protocol, portid uint32) string {
	return fmt.Sprintf("netlink socket %s (protocol %d, port %d)", who, protocol, portid)
}

// netlinkSockets lists the netlink sockets of each namespace met, on
// first use.
func (d *Dumper) netlinkSockets() (map[uint32]*netlinkDiag, error) {
	if d.netlink == nil {
		d.netlink = map[uint32]*netlinkDiag{}
	}
	for _, ns := range d.netns.unlisted("netlink") {
		all, err := listNetlinkSockets(ns)
		if err != nil {
			return nil, fmt.Errorf("netlink sockets: %w", err)
		}
		maps.Copy(d.netlink, all)
	}
	return d.netlink, nil
}

// addNetlinkSocket records netlink socket s (a copy of pid's fd).
func (d *Dumper) addNetlinkSocket(s int, ino, flags uint32) (uint32, error) {
	all, err := d.netlinkSockets()
	if err != nil {
		return 0, err
	}
	nd := all[ino]
	if nd == nil { // unbound: sock_diag lists only sockets in its tables
		p, err := unix.GetsockoptInt(s, unix.SOL_SOCKET, unix.SO_PROTOCOL)
		if err != nil {
			return 0, fmt.Errorf("netlink socket %d: SO_PROTOCOL: %w", ino, err)
		}
		nd = &netlinkDiag{ino: ino, protocol: uint8(p)}
	}
	what := netlinkName(fmt.Sprint(ino), uint32(nd.protocol), nd.portid)
	if err := d.checkNetlink(s, nd, what); err != nil {
		return 0, fmt.Errorf("%s: %w", what, err)
	}
	opts, err := dumpSkOpts(s, unix.AF_NETLINK)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", what, err)
	}
	ne := &sknetlink.NetlinkSkEntry{
		Ino: proto.Uint32(ino), Protocol: proto.Uint32(uint32(nd.protocol)), State: proto.Uint32(uint32(nd.state)),
		Flags: proto.Uint32(flags), Portid: proto.Uint32(nd.portid), Groups: nd.groups,
		DstPortid: proto.Uint32(nd.dstPortid), DstGroup: proto.Uint32(nd.dstGroup), Fown: zeroFown(), Opts: opts,
	}
	ne.NsId = d.netns.nsID()
	id := d.files.Add(&fdinfo.FileEntry{Type: fdinfo.FdTypes_NETLINKSK.Enum(), Nlsk: ne})
	ne.Id = proto.Uint32(id)
	return id, nil
}

// checkNetlink refuses a netlink socket whose state would be lost, and
// warns of the options that are.
func (d *Dumper) checkNetlink(s int, nd *netlinkDiag, what string) error {
	pfd := []unix.PollFd{{Fd: int32(s), Events: unix.POLLIN}}
	if _, err := unix.Poll(pfd, 0); err != nil {
		return fmt.Errorf("poll for messages to read: %w", err)
	}
	switch {
	case pfd[0].Revents&unix.POLLIN != 0:
		return fmt.Errorf("it has messages waiting to be read: not supported (nor by criu)")
	case nd.flags&ndiagFlagCbRunning != 0:
		return fmt.Errorf("the kernel is in the middle of a dump for it: not supported (nor by criu)")
	case nd.state == netlinkConnected && nd.dstGroup > 32:
		return fmt.Errorf("connected to group %d: groups above 32 cannot be connected to", nd.dstGroup)
	}
	// The NDIAG_FLAG_* options an image cannot hold.
	names := []string{0x2: "NETLINK_PKTINFO", 0x4: "NETLINK_BROADCAST_ERROR", 0x8: "NETLINK_NO_ENOBUFS",
		0x10: "NETLINK_LISTEN_ALL_NSID", 0x20: "NETLINK_CAP_ACK"}
	var lost []string
	for bit, name := range names {
		if name != "" && nd.flags&uint32(bit) != 0 {
			lost = append(lost, name)
		}
	}
	if len(lost) > 0 && d.opts.Warnf != nil {
		d.opts.Warnf("%s: %s not kept (criu's image has no place for them)", what, strings.Join(lost, ", "))
	}
	return nil
}

// MakeNetlink makes the netlink socket of file e: created, bound to its
// port id and groups, connected, its options set and, last, its status
// flags.
func (p *Plan) MakeNetlink(e *fdinfo.FileEntry) (int, error) {
	ne := e.GetNlsk()
	if ne == nil {
		return 0, fmt.Errorf("file id %d: NETLINKSK without its netlink_sk_entry", e.GetId())
	}
	what := netlinkName(fmt.Sprintf("%d (file id %d)", ne.GetIno(), e.GetId()), ne.GetProtocol(), ne.GetPortid())
	b := p.b
	fd, err := p.createIn(ne.NsId, "make "+what, unix.SYS_SOCKET, unix.AF_NETLINK, unix.SOCK_RAW, uint64(ne.GetProtocol()))
	if err != nil {
		return 0, err
	}
	groups := ne.GetGroups()
	if ne.GetPortid() != 0 {
		var first uint32
		if len(groups) > 0 {
			first, groups = groups[0], groups[1:]
		}
		sa := sockaddrNl(ne.GetPortid(), first)
		b.Call(fmt.Sprintf("bind %s with groups %#x", what, first), unix.SYS_BIND, uint64(fd), b.Bytes(sa), sockaddrNlSize)
	}
	first := len(ne.GetGroups()) - len(groups) // the word groups starts at
	for i, w := range groups {
		for ; w != 0; w &= w - 1 {
			g := uint32(32*(first+i) + bits.TrailingZeros32(w) + 1)
			setsockoptInt(b, fd, unix.SOL_NETLINK, unix.NETLINK_ADD_MEMBERSHIP, g, fmt.Sprintf("join group %d with %s", g, what))
		}
	}
	if ne.GetState() == netlinkConnected {
		g := ne.GetDstGroup()
		if g > 32 {
			return 0, fmt.Errorf("%s: connected to group %d: groups above 32 cannot be connected to", what, g)
		}
		var mask uint32
		if g != 0 {
			mask = 1 << (g - 1)
		}
		sa := sockaddrNl(ne.GetDstPortid(), mask)
		b.Call(fmt.Sprintf("connect %s to port %d group %d", what, ne.GetDstPortid(), g), unix.SYS_CONNECT, uint64(fd),
			b.Bytes(sa), sockaddrNlSize)
	}
	planSkOpts(b, fd, ne.GetOpts(), what)
	planFlags(b, fd, ne.GetFlags(), what)
	return fd, nil
}

// sockaddrNl is a struct sockaddr_nl.
func sockaddrNl(portid, groups uint32) []byte {
	sa := binary.LittleEndian.AppendUint16(nil, unix.AF_NETLINK)
	sa = binary.LittleEndian.AppendUint16(sa, 0)
	sa = binary.LittleEndian.AppendUint32(sa, portid)
	return binary.LittleEndian.AppendUint32(sa, groups)
}
