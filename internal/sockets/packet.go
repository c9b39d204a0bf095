package sockets

import (
	"encoding/binary"
	"fmt"
	"maps"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	packetsock "github.com/checkpoint-restore/go-criu/v8/crit/images/packet-sock"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
)

// Packet sockets (AF_PACKET), as CRIU's sk-packet.c has them: a
// files.img entry of type PACKETSK (PacketSockEntry) with the socket's
// type (SOCK_RAW, SOCK_DGRAM or the old SOCK_PACKET), protocol, the
// interface it is bound to, its SOL_PACKET settings (version, reserve,
// timestamp, copy threshold, aux data, original device, virtio-net
// header, loss), its multicast memberships, its fanout group and the
// setup of its receive and transmit rings, all from sock_diag
// (packet_diag.go) but the fanout group's flags, which only getsockopt
// tells (criu loses them).
//
// What amber restores, and how (MakePacket below): socket, bind to the
// interface (by index, or by name for SOCK_PACKET, which the task asks
// the kernel for, so that the name is that of the namespace restored),
// the SOL_PACKET settings in the order the kernel accepts them (the
// version and reserve before the rings; rings, then fanout, which needs
// a bound socket), the socket-level options, and the status flags. A
// membership added n times is added n times again (criu refuses one
// added twice).
//
// The frames queued on the socket and in its rings are not kept (nor by
// criu). Rings mapped in a process are mapped again from the socket
// (package mem, socketmap.go); PacketID names the socket to that
// mapping. The dump refuses, naming the descriptor: a fanout group that
// picks its member by a BPF program (the program cannot be read back),
// and PACKET_QDISC_BYPASS or PACKET_IGNORE_OUTGOING set, which CRIU's
// image has no field for.

// tpacketReq3Size is the size of struct tpacket_req3, which sets either
// ring of any version (the kernel reads the part its version uses).
const tpacketReq3Size = 28

// packetMreqSize is the size of struct packet_mreq_max (criu's), which
// PACKET_ADD_MEMBERSHIP takes: index, type, address length and up to
// maxAddrLen bytes of address.
const (
	packetMreqSize = 8 + maxAddrLen
	maxAddrLen     = 32
)

// fanoutUniqueID is PACKET_FANOUT_FLAG_UNIQUEID in the fanout word
// sock_diag reports: a group made with it has its id by now, and
// joining it again by that id fails with the flag set.
const fanoutUniqueID = unix.PACKET_FANOUT_FLAG_UNIQUEID << 16

// packetName names a packet socket in errors and in the plan: "packet
// socket 1234 (SOCK_DGRAM, protocol 0x800, interface 1)"; who is the
// inode at dump, the file id at restore (the image keeps no inode).
func packetName(who string, typ, protoNet, ifindex uint32) string {
	kinds := map[uint32]string{unix.SOCK_RAW: "SOCK_RAW", unix.SOCK_DGRAM: "SOCK_DGRAM", unix.SOCK_PACKET: "SOCK_PACKET"}
	kind, ok := kinds[typ]
	if !ok {
		kind = fmt.Sprintf("type %d", typ)
	}
	return fmt.Sprintf("packet socket %s (%s, protocol %#x, interface %d)", who, kind, swap16(uint16(protoNet)), ifindex)
}

// packetSockets lists the packet sockets of each namespace met, on
// first use.
func (d *Dumper) packetSockets() (map[uint32]*packetDiag, error) {
	if d.packet == nil {
		d.packet = map[uint32]*packetDiag{}
	}
	for _, ns := range d.netns.unlisted("packet") {
		all, err := listPacketSockets(ns)
		if err != nil {
			return nil, fmt.Errorf("packet sockets: %w", err)
		}
		maps.Copy(d.packet, all)
	}
	return d.packet, nil
}

// addPacketSocket records packet socket s (a copy of a process's fd).
func (d *Dumper) addPacketSocket(s int, ino, flags uint32) (uint32, error) {
	all, err := d.packetSockets()
	if err != nil {
		return 0, err
	}
	pd := all[ino]
	if pd == nil {
		return 0, fmt.Errorf("packet socket %d: not found by sock_diag in net:[%d]", ino, d.netns.curIno())
	}
	what := packetName(fmt.Sprint(ino), uint32(pd.typ), uint32(pd.proto), pd.ifindex)
	if err := checkPacket(s, pd); err != nil {
		return 0, fmt.Errorf("%s: %w", what, err)
	}
	pe, err := packetEntry(s, pd, flags)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", what, err)
	}
	pe.NsId = d.netns.nsID()
	id := d.files.Add(&fdinfo.FileEntry{Type: fdinfo.FdTypes_PACKETSK.Enum(), Psk: pe})
	pe.Id = proto.Uint32(id)
	if d.packetIDs == nil {
		d.packetIDs = map[uint32]uint32{}
	}
	d.packetIDs[ino] = id
	if n, err := unix.IoctlGetInt(s, unix.SIOCINQ); err == nil && n > 0 && d.opts.Warnf != nil {
		d.opts.Warnf("%s: the frames in its receive queue are dropped (as criu does)", what)
	}
	return id, nil
}

// checkPacket refuses what the images cannot hold of a packet socket.
func checkPacket(s int, pd *packetDiag) error {
	if pd.fanout != nil {
		switch typ := (*pd.fanout >> 16) & 0xff; typ {
		case unix.PACKET_FANOUT_CBPF, unix.PACKET_FANOUT_EBPF:
			return fmt.Errorf("its fanout group picks members by a BPF program (type %d): not supported (nor by criu)", typ)
		}
	}
	for _, o := range []struct {
		opt  int
		name string
	}{{unix.PACKET_QDISC_BYPASS, "PACKET_QDISC_BYPASS"}, {unix.PACKET_IGNORE_OUTGOING, "PACKET_IGNORE_OUTGOING"}} {
		if v, err := unix.GetsockoptInt(s, unix.SOL_PACKET, o.opt); err == nil && v != 0 {
			return fmt.Errorf("%s is set: not supported (criu's image has no place for it)", o.name)
		}
	}
	return nil
}

// PacketID is the file id of the packet socket of inode ino, once a
// descriptor of it is dumped: a process that maps the socket's rings
// names it by it (VMA_AREA_SOCKET, the VMA's shmid), as CRIU's
// dump_socket_map does.
func (d *Dumper) PacketID(ino uint32) (uint32, bool) {
	id, ok := d.packetIDs[ino]
	return id, ok
}

// packetEntry builds the PacketSockEntry of socket s, all but its id.
func packetEntry(s int, pd *packetDiag, flags uint32) (*packetsock.PacketSockEntry, error) {
	opts, err := dumpSkOpts(s, unix.AF_PACKET)
	if err != nil {
		return nil, err
	}
	pe := &packetsock.PacketSockEntry{
		Type: proto.Uint32(uint32(pd.typ)), Protocol: proto.Uint32(uint32(pd.proto)), Flags: proto.Uint32(flags),
		Ifindex: proto.Uint32(pd.ifindex), Fown: zeroFown(), Opts: opts,
		Version: proto.Uint32(pd.version), Reserve: proto.Uint32(pd.reserve),
		AuxData: proto.Bool(pd.flags&pdiAuxdata != 0), OrigDev: proto.Bool(pd.flags&pdiOrigdev != 0),
		VnetHdr: proto.Bool(pd.flags&pdiVnethdr != 0), Loss: proto.Bool(pd.flags&pdiLoss != 0),
		Timestamp: proto.Uint32(pd.tstamp), CopyThresh: proto.Uint32(pd.copyThresh),
		RxRing: ringEntry(pd.rx), TxRing: ringEntry(pd.tx),
	}
	if pd.fanout != nil {
		// sock_diag leaves the group's flags out (rollover, defrag...):
		// getsockopt has them, in the form setsockopt takes.
		f, err := unix.GetsockoptInt(s, unix.SOL_PACKET, unix.PACKET_FANOUT)
		if err != nil {
			return nil, fmt.Errorf("getsockopt PACKET_FANOUT: %w", err)
		}
		pe.Fanout = proto.Uint32(uint32(f) &^ fanoutUniqueID)
	}
	for _, m := range pd.mclist {
		for range m.count {
			// addr is a required field: empty, not nil, for a
			// membership without an address (promiscuous mode).
			pe.Mclist = append(pe.Mclist, &packetsock.PacketMclist{Index: proto.Uint32(m.ifindex),
				Type: proto.Uint32(uint32(m.typ)), Addr: append([]byte{}, m.addr...)})
		}
	}
	return pe, nil
}

// ringEntry is a ring's setup as the image keeps it (nil: no ring).
func ringEntry(r *packetRing) *packetsock.PacketRing {
	if r == nil {
		return nil
	}
	return &packetsock.PacketRing{BlockSize: proto.Uint32(r[0]), BlockNr: proto.Uint32(r[1]), FrameSize: proto.Uint32(r[2]),
		FrameNr: proto.Uint32(r[3]), RetireTmo: proto.Uint32(r[4]), SizeofPriv: proto.Uint32(r[5]), Features: proto.Uint32(r[6])}
}

// packetMaker plans making one packet socket.
type packetMaker struct {
	p    *Plan
	e    *packetsock.PacketSockEntry
	fd   int
	what string
}

// MakePacket makes the packet socket of file e: created, bound to its
// interface, its settings, memberships, rings, fanout and options set
// and, last, its status flags.
func (p *Plan) MakePacket(e *fdinfo.FileEntry) (int, error) {
	pe := e.GetPsk()
	if pe == nil {
		return 0, fmt.Errorf("file id %d: PACKETSK without its packet_sock_entry", e.GetId())
	}
	who := fmt.Sprintf("of file id %d", e.GetId())
	m := &packetMaker{p: p, e: pe, what: packetName(who, pe.GetType(), pe.GetProtocol(), pe.GetIfindex())}
	if err := checkPacketImage(pe); err != nil {
		return 0, fmt.Errorf("%s: %w", m.what, err)
	}
	var err error
	if m.fd, err = p.createIn(pe.NsId, "make "+m.what, unix.SYS_SOCKET, unix.AF_PACKET, uint64(pe.GetType()), uint64(pe.GetProtocol())); err != nil {
		return 0, err
	}
	if pe.GetType() == unix.SOCK_PACKET {
		m.bindByName()
	} else {
		m.bind()
		m.settings()
		m.memberships()
		m.ring(unix.PACKET_RX_RING, pe.GetRxRing())
		m.ring(unix.PACKET_TX_RING, pe.GetTxRing())
		if pe.Fanout != nil {
			m.setInt(unix.PACKET_FANOUT, pe.GetFanout()&^fanoutUniqueID, "join the fanout group")
		}
	}
	planSkOpts(p.b, m.fd, pe.GetOpts(), m.what)
	planFlags(p.b, m.fd, pe.GetFlags(), m.what)
	return m.fd, nil
}

// checkPacketImage refuses a packet socket of the images that amber
// cannot make.
func checkPacketImage(pe *packetsock.PacketSockEntry) error {
	switch pe.GetType() {
	case unix.SOCK_RAW, unix.SOCK_DGRAM, unix.SOCK_PACKET:
	default:
		return fmt.Errorf("socket type %d: not a packet socket type", pe.GetType())
	}
	for _, m := range pe.GetMclist() {
		if len(m.GetAddr()) > maxAddrLen {
			return fmt.Errorf("a membership with an address of %d bytes (at most %d)", len(m.GetAddr()), maxAddrLen)
		}
	}
	return nil
}

// bind binds a SOCK_RAW or SOCK_DGRAM socket to its interface (struct
// sockaddr_ll with the index; protocol 0 keeps the socket's).
func (m *packetMaker) bind() {
	if m.e.GetIfindex() == 0 {
		return // as made: on every interface
	}
	b := m.p.b
	sa := binary.LittleEndian.AppendUint16(nil, unix.AF_PACKET)
	sa = binary.LittleEndian.AppendUint16(sa, 0)
	sa = binary.LittleEndian.AppendUint32(sa, m.e.GetIfindex())
	sa = append(sa, make([]byte, 12)...)
	b.Call("bind "+m.what, unix.SYS_BIND, uint64(m.fd), b.Bytes(sa), uint64(len(sa)))
}

// bindByName binds a SOCK_PACKET socket, which takes an interface name,
// not an index: SIOCGIFNAME writes the name of the index into a struct
// ifreq placed right after a 2-byte family, so that the family and the
// name's start are the struct sockaddr bind reads.
func (m *packetMaker) bindByName() {
	if m.e.GetIfindex() == 0 {
		return
	}
	b := m.p.b
	buf := binary.LittleEndian.AppendUint16(nil, unix.AF_PACKET)
	ifr := make([]byte, 40) // struct ifreq: name[16], then the index
	binary.LittleEndian.PutUint32(ifr[unix.IFNAMSIZ:], m.e.GetIfindex())
	at := b.Bytes(append(buf, ifr...))
	b.Call(fmt.Sprintf("read the name of interface %d for %s", m.e.GetIfindex(), m.what), unix.SYS_IOCTL,
		uint64(m.fd), unix.SIOCGIFNAME, at+2)
	b.Call("bind "+m.what+" by name", unix.SYS_BIND, uint64(m.fd), at, 16)
}

// settings sets the SOL_PACKET settings that are not at their default,
// before the rings: the kernel refuses to change most with a ring.
func (m *packetMaker) settings() {
	e := m.e
	for _, o := range []struct {
		opt  int
		v    uint32
		name string
	}{
		{unix.PACKET_VERSION, e.GetVersion(), "PACKET_VERSION"}, {unix.PACKET_RESERVE, e.GetReserve(), "PACKET_RESERVE"},
		{unix.PACKET_TIMESTAMP, e.GetTimestamp(), "PACKET_TIMESTAMP"},
		{unix.PACKET_COPY_THRESH, e.GetCopyThresh(), "PACKET_COPY_THRESH"},
		{unix.PACKET_AUXDATA, b2u(e.GetAuxData()), "PACKET_AUXDATA"}, {unix.PACKET_ORIGDEV, b2u(e.GetOrigDev()), "PACKET_ORIGDEV"},
		{unix.PACKET_VNET_HDR, b2u(e.GetVnetHdr()), "PACKET_VNET_HDR"}, {unix.PACKET_LOSS, b2u(e.GetLoss()), "PACKET_LOSS"},
	} {
		if o.v != 0 {
			m.setInt(o.opt, o.v, "set "+o.name)
		}
	}
}

// memberships adds the multicast memberships again.
func (m *packetMaker) memberships() {
	b := m.p.b
	for _, ml := range m.e.GetMclist() {
		mreq := binary.LittleEndian.AppendUint32(nil, ml.GetIndex())
		mreq = binary.LittleEndian.AppendUint16(mreq, uint16(ml.GetType()))
		mreq = binary.LittleEndian.AppendUint16(mreq, uint16(len(ml.GetAddr())))
		mreq = append(mreq, ml.GetAddr()...)
		mreq = append(mreq, make([]byte, packetMreqSize-len(mreq))...)
		b.Call(fmt.Sprintf("add membership of type %d on interface %d to %s", ml.GetType(), ml.GetIndex(), m.what),
			unix.SYS_SETSOCKOPT, uint64(m.fd), unix.SOL_PACKET, unix.PACKET_ADD_MEMBERSHIP, b.Bytes(mreq), packetMreqSize)
	}
}

// ring sets up a ring (opt PACKET_RX_RING or PACKET_TX_RING) as it was.
func (m *packetMaker) ring(opt int, r *packetsock.PacketRing) {
	if r == nil {
		return
	}
	b := m.p.b
	var req []byte
	for _, v := range []uint32{r.GetBlockSize(), r.GetBlockNr(), r.GetFrameSize(), r.GetFrameNr(), r.GetRetireTmo(),
		r.GetSizeofPriv(), r.GetFeatures()} {
		req = binary.LittleEndian.AppendUint32(req, v)
	}
	b.Call(fmt.Sprintf("set up ring %d (%d blocks of %d) of %s", opt, r.GetBlockNr(), r.GetBlockSize(), m.what),
		unix.SYS_SETSOCKOPT, uint64(m.fd), unix.SOL_PACKET, uint64(opt), b.Bytes(req), tpacketReq3Size)
}

// setInt plans setsockopt(fd, SOL_PACKET, opt, &v, 4).
func (m *packetMaker) setInt(opt int, v uint32, what string) {
	setsockoptInt(m.p.b, m.fd, unix.SOL_PACKET, opt, v, what+" of "+m.what)
}
