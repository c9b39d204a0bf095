package files

import (
	"slices"
	"testing"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	packetsock "github.com/checkpoint-restore/go-criu/v8/crit/images/packet-sock"
	sknetlink "github.com/checkpoint-restore/go-criu/v8/crit/images/sk-netlink"
	skopts "github.com/checkpoint-restore/go-criu/v8/crit/images/sk-opts"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
)

// addPacket adds packet socket e to l's files and returns its id.
func (l *layout) addPacket(e *packetsock.PacketSockEntry) uint32 {
	id := l.nextID()
	e.Id = proto.Uint32(id)
	if e.Fown == nil {
		e.Fown = newFown()
	}
	if e.Opts == nil {
		e.Opts = &skopts.SkOptsEntry{}
	}
	l.in.Files[id] = &fdinfo.FileEntry{Type: fdinfo.FdTypes_PACKETSK.Enum(), Id: proto.Uint32(id), Psk: e}
	return id
}

// addNetlink adds netlink socket e to l's files and returns its id.
func (l *layout) addNetlink(e *sknetlink.NetlinkSkEntry) uint32 {
	id := l.nextID()
	e.Id = proto.Uint32(id)
	e.Fown, e.Opts = newFown(), &skopts.SkOptsEntry{}
	l.in.Files[id] = &fdinfo.FileEntry{Type: fdinfo.FdTypes_NETLINKSK.Enum(), Id: proto.Uint32(id), Nlsk: e}
	return id
}

// packetImg is a packet socket of the images.
func packetImg(typ, protoNet, ifindex uint32) *packetsock.PacketSockEntry {
	f := proto.Bool(false)
	z := proto.Uint32(0)
	return &packetsock.PacketSockEntry{Type: proto.Uint32(typ), Protocol: proto.Uint32(protoNet), Flags: proto.Uint32(unix.O_RDWR),
		Ifindex: proto.Uint32(ifindex), Version: z, Reserve: z, AuxData: f, OrigDev: f, VnetHdr: f, Loss: f, Timestamp: z,
		CopyThresh: z}
}

// TestPlanPacket restores packet sockets in a simulated task: bound to
// their interface (SOCK_PACKET by the name the task reads), the version,
// reserve and vnet header set before the ring, the fanout after the
// bind, every membership added as many times as the image lists it, and
// the status flags as dumped.
func TestPlanPacket(t *testing.T) {
	l := newLayout()
	ring := packetImg(unix.SOCK_RAW, 0, 0)
	ring.Version, ring.Reserve, ring.VnetHdr = proto.Uint32(unix.TPACKET_V3), proto.Uint32(8), proto.Bool(true)
	ring.RxRing = &packetsock.PacketRing{BlockSize: proto.Uint32(4096), BlockNr: proto.Uint32(2), FrameSize: proto.Uint32(2048),
		FrameNr: proto.Uint32(4), RetireTmo: proto.Uint32(60), SizeofPriv: proto.Uint32(0), Features: proto.Uint32(0)}
	l.fd(3, l.addPacket(ring), false)
	rx := packetImg(unix.SOCK_DGRAM, 0xb588, 1) // ETH_P 0x88b5 in network order
	rx.Flags = proto.Uint32(unix.O_RDWR | unix.O_NONBLOCK)
	rx.Fanout = proto.Uint32(77 | unix.PACKET_FANOUT_FLAG_UNIQUEID<<16)
	promisc := &packetsock.PacketMclist{Index: proto.Uint32(1), Type: proto.Uint32(unix.PACKET_MR_PROMISC), Addr: []byte{}}
	rx.Mclist = []*packetsock.PacketMclist{promisc, promisc}
	l.fd(4, l.addPacket(rx), false)
	l.fd(5, l.addPacket(packetImg(unix.SOCK_PACKET, 0x300, 1)), false)
	l.fd(6, l.addPacket(packetImg(unix.SOCK_PACKET, 0x300, 0)), false)

	s, p := runFds(t, l, 0, 1, 2)
	k := s.fds[3].f.link
	if k == nil || k.typ != unix.SOCK_RAW || !k.ring || k.opts[unix.PACKET_VERSION] != unix.TPACKET_V3 ||
		k.opts[unix.PACKET_RESERVE] != 8 || k.opts[unix.PACKET_VNET_HDR] != 1 || k.bound {
		t.Errorf("fd 3: %+v, want an unbound raw socket, version 3, reserve 8, vnet header, a ring", k)
	}
	k = s.fds[4].f.link
	if k == nil || k.proto != 0xb588 || k.ifindex != 1 || k.mreqs != 2 || k.opts[unix.PACKET_FANOUT] != 77 {
		t.Errorf("fd 4: %+v, want protocol 0xb588 on interface 1, 2 memberships, fanout 77 without its unique-id flag", k)
	}
	if f := s.fds[4].f.flags; f&unix.O_NONBLOCK == 0 {
		t.Errorf("fd 4: status flags %#x, want O_NONBLOCK", f)
	}
	if k := s.fds[5].f.link; k == nil || k.ifname != "lo" {
		t.Errorf("fd 5: %+v, want a SOCK_PACKET socket bound to lo", k)
	}
	if k := s.fds[6].f.link; k == nil || k.ifname != "" || k.typ != unix.SOCK_PACKET {
		t.Errorf("fd 6: %+v, want an unbound SOCK_PACKET socket", k)
	}
	if t.Failed() {
		t.Logf("plan:\n%s", p)
	}
}

// TestPlanNetlink restores netlink sockets in a simulated task: bound to
// the port id with the first 32 groups, the groups above 32 joined one
// by one, connected to a port id and group, and an unbound one left
// unbound with its protocol.
func TestPlanNetlink(t *testing.T) {
	l := newLayout()
	nl := func(protocol, state, portid uint32, groups []uint32, dstPortid, dstGroup uint32) *sknetlink.NetlinkSkEntry {
		return &sknetlink.NetlinkSkEntry{Ino: proto.Uint32(100), Protocol: proto.Uint32(protocol), State: proto.Uint32(state),
			Flags: proto.Uint32(unix.O_RDWR), Portid: proto.Uint32(portid), Groups: groups, DstPortid: proto.Uint32(dstPortid),
			DstGroup: proto.Uint32(dstGroup)}
	}
	l.fd(3, l.addNetlink(nl(unix.NETLINK_ROUTE, 7, 4242, []uint32{0x11, 0x1}, 0, 0)), false)
	l.fd(4, l.addNetlink(nl(unix.NETLINK_KOBJECT_UEVENT, 1, 0x80001234, nil, 4242, 32)), false)
	l.fd(5, l.addNetlink(nl(unix.NETLINK_ROUTE, 0, 0, nil, 0, 0)), false)
	l.fd(6, l.addNetlink(nl(unix.NETLINK_ROUTE, 7, 0, []uint32{0, 0x4}, 0, 0)), false)

	s, p := runFds(t, l, 0, 1, 2)
	if k := s.fds[3].f.link; k == nil || k.portid != 4242 || !slices.Equal(k.groups, []uint32{1, 5, 33}) || k.connected {
		t.Errorf("fd 3: %+v, want port 4242 in groups 1, 5 and 33", k)
	}
	if k := s.fds[4].f.link; k == nil || k.portid != 0x80001234 || !k.connected || k.dstPortid != 4242 || k.dstGroups != 1<<31 {
		t.Errorf("fd 4: %+v, want port %#x connected to port 4242, group 32", k, 0x80001234)
	}
	if k := s.fds[5].f.link; k == nil || k.bound || k.proto != unix.NETLINK_ROUTE {
		t.Errorf("fd 5: %+v, want an unbound NETLINK_ROUTE socket", k)
	}
	if k := s.fds[6].f.link; k == nil || k.bound || !slices.Equal(k.groups, []uint32{35}) {
		t.Errorf("fd 6: %+v, want an unbound socket in group 35", k)
	}
	if t.Failed() {
		t.Logf("plan:\n%s", p)
	}
}
