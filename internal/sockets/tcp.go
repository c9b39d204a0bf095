package sockets

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"time"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	skopts "github.com/checkpoint-restore/go-criu/v8/crit/images/sk-opts"
	tcpstream "github.com/checkpoint-restore/go-criu/v8/crit/images/tcp-stream"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/image"
	"amber/internal/netfilter"
	"amber/internal/proc"
)

// Established TCP connections, as CRIU's sk-tcp.c and libsoccr have them,
// through the kernel's TCP repair mode (TCP_REPAIR, Linux 3.5+); those in
// CLOSE_WAIT too, made established and handed their peer's FIN again
// (tcp_fin.go).
//
// Dump: amber takes a copy of the socket (pidfd_getfd), makes the socket
// drop every segment that arrives from now on (a one-instruction classic
// BPF filter, SO_ATTACH_FILTER: the kernel runs it before TCP sees the
// segment) and turns repair mode on; both belong to the socket, not to
// the descriptor. In repair mode amber reads the sequence numbers of both
// queues (TCP_REPAIR_QUEUE, TCP_QUEUE_SEQ), their bytes (MSG_PEEK), how
// much of the send queue was never sent (SIOCOUTQNSD), the options
// negotiated at the handshake (TCP_INFO, TCP_MAXSEG, TCP_TIMESTAMP) and
// the windows (TCP_REPAIR_WINDOW), into tcp-stream-INO.img. The copies
// stay open until Release: after the kill they are closed, still
// in repair mode; after --leave-running or a failed dump repair mode is
// turned off and the filter removed again.
//
// This is amber's network lock, and takes no iptables or nftables rule:
//   - the filter: what the peer sends after amber read the queues is
//     neither queued nor acknowledged, so the peer sends it again later,
//     to the restored socket, instead of it being acknowledged and lost;
//   - repair mode: when the dumped tasks die, the connection is closed
//     with no FIN and no RST to the peer (tcp_close -> tcp_disconnect
//     sends nothing in repair mode).
//
// What neither covers is the peer talking while no socket exists,
// between the kill and the restore: a segment it sends then (new data, a
// retransmission of what the filter dropped, a keepalive) is answered by
// the kernel with a RST. criu's firewall rule outlives the dump and
// drops those too; amber's filter dies with the socket, so a peer
// outside the dumped tree must stay quiet until the restore (a peer
// inside the tree is frozen, filtered, then closed in repair mode too).
//
// Restore, in the plan of the task (MakeInet, repair below): a socket in
// repair mode is bound to the dumped address, given the sequence numbers,
// connected (no handshake: in repair mode connect only sets the
// connection up), given the options and the timestamp, its queues
// refilled (the receive queue as received data, the part of the send
// queue that was sent as sent, unacknowledged data) and its windows. It
// stays in repair mode until every task is restored, so that no segment
// leaves before the peer, if it is in the tree too, exists again. Then
// amber (EndTCPRepair) checks each queue; gives every connection first
// the FINs that make it send nothing (the peer's, and the peer's
// acknowledgement of its own), so that no connection sends to a peer not
// yet in its dumped state; then on each writes the part of the send
// queue that was never sent, as the task had written it, and queues its
// own FIN (tcp_fin.go); then turns repair mode off on all (the kernel
// sends a window probe and the connection resumes) and gives back
// SO_REUSEADDR, which leaving repair mode clears.
//
// The dump reads one end of a connection after the other, and repair mode
// stops no timer: an end already read may still send its peer, not yet
// locked, a window probe whose bytes the peer queues and acknowledges to
// a filter that drops the acknowledgement. When both ends are in the
// images, the restore takes those bytes out of the sender's send queue
// (tcp_peer.go), as if the acknowledgement had come.

// TCPStream is tcp-stream-INO.img: one connection's state and the bytes
// in its queues.
type TCPStream struct {
	Entry *tcpstream.TcpStreamEntry
	In    []byte // the receive queue: received, not read yet
	Out   []byte // the send queue: written, not acknowledged; its last Entry.UnsqLen bytes were never sent
}

// Repair queues of linux/tcp.h.
const (
	tcpNoQueue   = 0
	tcpRecvQueue = 1
	tcpSendQueue = 2
)

// TCPI_OPT_* of linux/tcp.h: options negotiated at the handshake.
const (
	tcpiOptTimestamps = 1
	tcpiOptSack       = 2
	tcpiOptWscale     = 4
)

// tcpDump is what a dump keeps of the connections it put in repair mode
// (in inetDump).
type tcpDump struct {
	socks   []*repairedSocket
	streams map[uint32]*TCPStream // by inode
}

// repairedSocket is amber's copy of a socket in repair mode.
type repairedSocket struct {
	pid, fd, s int
	ino        uint32
	reuseaddr  bool
	conn       netfilter.Conn
}

// dumpTCPStream puts connection k (socket s, a copy of pid's fd) in
// repair mode and reads its state. reuseaddr is its SO_REUSEADDR, which
// Release gives back if the connection goes on.
func (d *Dumper) dumpTCPStream(pid, fd, s int, k *inetSock, reuseaddr bool) error {
	c, err := unix.FcntlInt(uintptr(s), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("keep a copy for repair mode: %w", err)
	}
	if err := lockSocket(c); err != nil {
		unix.Close(c)
		return err
	}
	if err := unix.SetsockoptInt(c, unix.IPPROTO_TCP, unix.TCP_REPAIR, unix.TCP_REPAIR_ON); err != nil {
		unix.SetsockoptInt(c, unix.SOL_SOCKET, unix.SO_DETACH_FILTER, 0)
		unix.Close(c)
		return fmt.Errorf("turn repair mode on (TCP_REPAIR): %w", err)
	}
	t := &d.inetSockets().tcp
	t.socks = append(t.socks, &repairedSocket{pid: pid, fd: fd, s: c, ino: k.ino, reuseaddr: reuseaddr,
		conn: netfilter.Conn{Local: k.src, Peer: k.dst}})
	st, err := readTCPStream(c)
	if err != nil {
		return err
	}
	t.streams[k.ino] = st
	return nil
}

// dropAll is a classic BPF socket filter that keeps no byte of any
// packet: BPF_RET|BPF_K 0.
var dropAll = []unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: 0}}

// lockSocket makes socket s drop every segment it receives from now on.
// A socket that has a filter of its own is refused: amber would replace
// it, and could not give it back after --leave-running or a failed dump.
func lockSocket(s int) error {
	var n uint32
	if err := getsockopt(s, unix.SOL_SOCKET, unix.SO_GET_FILTER, nil, &n); err != nil || n != 0 {
		return fmt.Errorf("a socket filter is attached (SO_GET_FILTER: %d instructions, %v): not supported yet", n, err)
	}
	prog := unix.SockFprog{Len: uint16(len(dropAll)), Filter: &dropAll[0]}
	if err := unix.SetsockoptSockFprog(s, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &prog); err != nil {
		return fmt.Errorf("make it drop what arrives (SO_ATTACH_FILTER): %w", err)
	}
	return nil
}

// readTCPStream reads the state of a connection in repair mode.
func readTCPStream(s int) (*TCPStream, error) {
	ti, err := readTCPInfo(s)
	if err != nil {
		return nil, err
	}
	if !repairable(uint32(ti.state)) && ti.state != tcpClose {
		return nil, fmt.Errorf("TCP state %s in repair mode: not supported yet", tcpStateName(uint32(ti.state)))
	}
	e := &tcpstream.TcpStreamEntry{OptMask: proto.Uint32(uint32(ti.options)), SndWscale: proto.Uint32(0)}
	if err := readQueueLengths(s, e, uint32(ti.state)); err != nil {
		return nil, err
	}
	if err := readHandshakeOptions(s, ti, e); err != nil {
		return nil, err
	}
	if err := readWindow(s, e); err != nil {
		return nil, err
	}
	st := &TCPStream{Entry: e}
	var seq uint32
	if seq, st.In, err = peekRepairQueue(s, tcpRecvQueue, e.GetInqLen()); err != nil {
		return nil, fmt.Errorf("receive queue: %w", err)
	}
	e.InqSeq = proto.Uint32(seq)
	if seq, st.Out, err = peekRepairQueue(s, tcpSendQueue, e.GetOutqLen()); err != nil {
		return nil, fmt.Errorf("send queue: %w", err)
	}
	e.OutqSeq = proto.Uint32(seq)
	return st, nil
}

// readQueueLengths reads how many bytes each queue holds and how many of
// the send queue's were never sent: a FIN queued (in state) is no byte.
func readQueueLengths(s int, e *tcpstream.TcpStreamEntry, state uint32) error {
	for _, q := range []struct {
		req  uint
		name string
		set  **uint32
	}{{unix.SIOCOUTQ, "SIOCOUTQ", &e.OutqLen}, {unix.SIOCOUTQNSD, "SIOCOUTQNSD", &e.UnsqLen}, {unix.SIOCINQ, "SIOCINQ", &e.InqLen}} {
		n, err := unix.IoctlGetInt(s, q.req)
		if err != nil {
			return fmt.Errorf("%s: %w", q.name, err)
		}
		*q.set = proto.Uint32(uint32(n))
	}
	if state == tcpClose {
		// A connection that ended: what a reset left in the send queue
		// no one reads or sends again (CRIU keeps none either).
		e.OutqLen, e.UnsqLen = proto.Uint32(0), proto.Uint32(0)
	}
	if finOut(state) == 1 {
		for _, n := range []**uint32{&e.OutqLen, &e.UnsqLen} {
			if **n > 0 {
				*n = proto.Uint32(**n - 1)
			}
		}
	}
	return nil
}

// readHandshakeOptions reads the MSS and, if negotiated, the window
// scales and the timestamp.
func readHandshakeOptions(s int, ti tcpInfo, e *tcpstream.TcpStreamEntry) error {
	mss, err := unix.GetsockoptInt(s, unix.IPPROTO_TCP, unix.TCP_MAXSEG)
	if err != nil {
		return fmt.Errorf("getsockopt TCP_MAXSEG: %w", err)
	}
	e.MssClamp = proto.Uint32(uint32(mss))
	if ti.options&tcpiOptWscale != 0 {
		e.SndWscale, e.RcvWscale = proto.Uint32(uint32(ti.sndWscale)), proto.Uint32(uint32(ti.rcvWscale))
	}
	if ti.options&tcpiOptTimestamps != 0 {
		ts, err := unix.GetsockoptInt(s, unix.IPPROTO_TCP, unix.TCP_TIMESTAMP)
		if err != nil {
			return fmt.Errorf("getsockopt TCP_TIMESTAMP: %w", err)
		}
		e.Timestamp = proto.Uint32(uint32(ts))
	}
	return nil
}

// readWindow reads struct tcp_repair_window (Linux 4.8+).
func readWindow(s int, e *tcpstream.TcpStreamEntry) error {
	b, err := getsockoptBytes(s, unix.IPPROTO_TCP, unix.TCP_REPAIR_WINDOW, 20)
	if errors.Is(err, unix.ENOPROTOOPT) {
		return nil
	}
	if err != nil || len(b) < 20 {
		return fmt.Errorf("getsockopt TCP_REPAIR_WINDOW (%d bytes): %w", len(b), err)
	}
	le := binary.LittleEndian
	e.SndWl1, e.SndWnd, e.MaxWindow = proto.Uint32(le.Uint32(b)), proto.Uint32(le.Uint32(b[4:])), proto.Uint32(le.Uint32(b[8:]))
	e.RcvWnd, e.RcvWup = proto.Uint32(le.Uint32(b[12:])), proto.Uint32(le.Uint32(b[16:]))
	return nil
}

// peekRepairQueue reads the sequence number after the end of queue q
// (rcv_nxt, write_seq) and its n bytes, without taking them. A peek
// offset the task set (SO_PEEK_OFF) is put aside meanwhile.
func peekRepairQueue(s, q int, n uint32) (seq uint32, data []byte, err error) {
	if err := unix.SetsockoptInt(s, unix.IPPROTO_TCP, unix.TCP_REPAIR_QUEUE, q); err != nil {
		return 0, nil, fmt.Errorf("TCP_REPAIR_QUEUE %d: %w", q, err)
	}
	defer unix.SetsockoptInt(s, unix.IPPROTO_TCP, unix.TCP_REPAIR_QUEUE, tcpNoQueue)
	v, err := unix.GetsockoptInt(s, unix.IPPROTO_TCP, unix.TCP_QUEUE_SEQ)
	if err != nil {
		return 0, nil, fmt.Errorf("getsockopt TCP_QUEUE_SEQ: %w", err)
	}
	if n == 0 {
		return uint32(v), nil, nil
	}
	if off, err := unix.GetsockoptInt(s, unix.SOL_SOCKET, unix.SO_PEEK_OFF); err == nil && off >= 0 {
		unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_PEEK_OFF, 0)
		defer unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_PEEK_OFF, off)
	}
	// One byte more than the queue holds shows it holds no more.
	buf := make([]byte, n+1)
	got, _, err := unix.Recvfrom(s, buf, unix.MSG_PEEK|unix.MSG_DONTWAIT)
	if err != nil {
		return 0, nil, fmt.Errorf("peek %d bytes: %w", n, err)
	}
	if got != int(n) {
		return 0, nil, fmt.Errorf("peeked %d bytes, the queue holds %d", got, n)
	}
	return uint32(v), buf[:n], nil
}

// TCPConns lists the connections the dump put in repair mode, for the
// network lock.
func (d *Dumper) TCPConns() []netfilter.Conn {
	if d.inet == nil {
		return nil
	}
	out := make([]netfilter.Conn, len(d.inet.tcp.socks))
	for i, r := range d.inet.tcp.socks {
		out[i] = r.conn
	}
	return out
}

// LockedConns lists the connections of the images that a dump locked:
// the TCP sockets of idx with a tcp-stream image (streams, by inode).
func LockedConns(idx map[uint32]*fdinfo.FileEntry, streams map[uint32]*TCPStream) []netfilter.Conn {
	var out []netfilter.Conn
	seen := map[uint32]bool{}
	for _, e := range idx {
		sk := e.GetIsk()
		if sk == nil || streams[sk.GetIno()] == nil || seen[sk.GetIno()] {
			continue
		}
		seen[sk.GetIno()] = true
		if k, err := readInetImage(sk); err == nil {
			out = append(out, netfilter.Conn{Local: k.src, Peer: k.dst})
		}
	}
	return out
}

// Release ends what the dump did to the sockets it took. If the tree
// goes on (resume: --leave-running, or a failed dump), each connection
// leaves repair mode and gets its SO_REUSEADDR back; else the tree is
// dead and closing amber's copies, the last references, closes the
// connections silently.
func (d *Dumper) Release(resume bool) error {
	d.netns.close()
	if d.inet == nil {
		return nil
	}
	var errs []error
	for _, r := range d.inet.tcp.socks {
		if resume {
			errs = append(errs, r.resume())
		}
		unix.Close(r.s)
	}
	d.inet.tcp.socks = nil
	return errors.Join(errs...)
}

// resume turns repair mode off on a dumped connection that goes on, and
// lets it receive again.
func (r *repairedSocket) resume() error {
	if err := unix.SetsockoptInt(r.s, unix.IPPROTO_TCP, unix.TCP_REPAIR, unix.TCP_REPAIR_OFF); err != nil {
		return fmt.Errorf("pid %d fd %d: tcp socket %d: turn repair mode off: %w", r.pid, r.fd, r.ino, err)
	}
	if err := unix.SetsockoptInt(r.s, unix.SOL_SOCKET, unix.SO_DETACH_FILTER, 0); err != nil {
		return fmt.Errorf("pid %d fd %d: tcp socket %d: remove the filter that dropped what arrived: %w", r.pid, r.fd, r.ino, err)
	}
	if err := unix.SetsockoptInt(r.s, unix.SOL_SOCKET, unix.SO_REUSEADDR, int(b2u(r.reuseaddr))); err != nil {
		return fmt.Errorf("pid %d fd %d: tcp socket %d: SO_REUSEADDR: %w", r.pid, r.fd, r.ino, err)
	}
	return nil
}

// tcpStreamName is the image of the connection of socket inode ino.
func tcpStreamName(ino uint32) string { return fmt.Sprintf("tcp-stream-%x.img", ino) }

// writeStreams writes a tcp-stream image for each connection.
func (in *inetDump) writeStreams(dir image.Dir) error {
	if in == nil {
		return nil
	}
	for ino, st := range in.tcp.streams {
		if err := writeTCPStream(dir, ino, st); err != nil {
			return err
		}
	}
	return nil
}

func writeTCPStream(dir image.Dir, ino uint32, st *TCPStream) error {
	w, err := image.Create(dir.File(tcpStreamName(ino)), image.TcpStream)
	if err != nil {
		return err
	}
	if err := w.WriteWithPayload(st.Entry, append(slices.Clip(st.In), st.Out...)); err != nil {
		w.Close()
		return err
	}
	return w.Close()
}

// ReadTCPStreams reads the tcp-stream image of every TCP socket of idx
// that has one, by socket inode: only those, so that a stale image of
// another dump in the directory is never read.
func ReadTCPStreams(dir image.Dir, idx map[uint32]*fdinfo.FileEntry) (map[uint32]*TCPStream, error) {
	out := map[uint32]*TCPStream{}
	var ends []tcpEnd
	for _, e := range idx {
		sk := e.GetIsk()
		if e.GetType() != fdinfo.FdTypes_INETSK || sk.GetProto() != unix.IPPROTO_TCP {
			continue
		}
		st, err := readTCPStream1(dir.File(tcpStreamName(sk.GetIno())))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if _, dup := out[sk.GetIno()]; dup {
			continue
		}
		out[sk.GetIno()] = st
		// A socket the restore refuses (readInetImage) pairs with none.
		if k, err := readInetImage(sk); err == nil {
			ends = append(ends, tcpEnd{st: st, state: sk.GetState(), ns: sk.GetNsId(), src: k.src, dst: k.dst})
		}
	}
	ackPeersReceived(ends)
	return out, nil
}

// readTCPStream1 reads one tcp-stream image.
func readTCPStream1(p image.Path) (*TCPStream, error) {
	f, err := p.OpenContents()
	if err != nil {
		return nil, err
	}
	defer f.Close()
	path := p.String()
	r, err := image.NewReader(f, path, image.TcpStream)
	if err != nil {
		return nil, err
	}
	e := &tcpstream.TcpStreamEntry{}
	data, err := r.NextWithPayload(e, func() int { return int(e.GetInqLen()) + int(e.GetOutqLen()) })
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if e.UnsqLen == nil || e.GetUnsqLen() > e.GetOutqLen() {
		return nil, fmt.Errorf("%s: unsent length %d of a send queue of %d bytes", path, e.GetUnsqLen(), e.GetOutqLen())
	}
	return &TCPStream{Entry: e, In: data[:e.GetInqLen()], Out: data[e.GetInqLen():]}, nil
}

// repairChunk is the most bytes queued by one send in repair mode: a
// receive queue takes one buffer per call of at most MAX_SKB_FRAGS (17)
// pages, so that a larger write would be cut short.
const repairChunk = 64 << 10

// repair plans making a connection in repair mode (libsoccr's
// libsoccr_restore): bind, sequence numbers, connect, handshake options,
// timestamp, queues, windows. A connection still sending its SYN
// (SYN_SENT) is only bound and given its send sequence: EndTCPRepair
// connects it, out of repair mode, which sends the SYN again with the
// dumped sequence number (a connect in the task's plan would fail with
// EINPROGRESS, its socket being non-blocking).
func (m *inetMaker) repair() error {
	st := m.p.in.TCPStreams[m.k.e.GetIno()]
	if st == nil {
		return fmt.Errorf("no %s in the images", tcpStreamName(m.k.e.GetIno()))
	}
	e := st.Entry
	m.setInt(unix.IPPROTO_TCP, unix.TCP_REPAIR, unix.TCP_REPAIR_ON, "turn repair mode on")
	if err := m.bind(); err != nil {
		return err
	}
	if m.k.e.GetState() == tcpSynSent {
		// Its SYN, sent again by EndTCPRepair's connect, counts in the
		// send sequence: the dumped one is one past it.
		m.setQueueSeq(tcpSendQueue, e.GetOutqSeq()-1, "send")
		m.p.tcp.Repair = append(m.p.tcp.Repair, m.id)
		return nil
	}
	m.setQueueSeq(tcpRecvQueue, e.GetInqSeq()-m.finIn()-e.GetInqLen(), "receive")
	m.setQueueSeq(tcpSendQueue, e.GetOutqSeq()-finOut(m.k.e.GetState())-e.GetOutqLen(), "send")
	sa := inetSockaddr(m.k.e.GetFamily(), m.k.dst)
	b := m.p.b
	b.Call(fmt.Sprintf("connect %v in repair mode", m.k), unix.SYS_CONNECT, uint64(m.fd), b.Bytes(sa), uint64(len(sa)))
	m.handshakeOptions(e)
	m.refillQueues(st)
	m.window(e)
	m.p.tcp.Repair = append(m.p.tcp.Repair, m.id)
	return nil
}

// finIn is 1 if the connection had received its peer's FIN, which
// counts in the dumped receive sequence and window but is handed to the
// restored connection only by EndTCPRepair (tcp_fin.go), else 0.
func (m *inetMaker) finIn() uint32 {
	if finReceived(m.k.e.GetState()) {
		return 1
	}
	return 0
}

// setQueueSeq plans setting the first sequence number of queue q.
func (m *inetMaker) setQueueSeq(q int, seq uint32, name string) {
	m.setInt(unix.IPPROTO_TCP, unix.TCP_REPAIR_QUEUE, uint32(q), "select the "+name+" queue")
	m.setInt(unix.IPPROTO_TCP, unix.TCP_QUEUE_SEQ, seq, fmt.Sprintf("set the %s sequence to %d", name, seq))
}

// handshakeOptions plans setting what the handshake negotiated: SACK,
// window scales, timestamps, MSS (struct tcp_repair_opt pairs), and the
// timestamp clock.
func (m *inetMaker) handshakeOptions(e *tcpstream.TcpStreamEntry) {
	var opts []byte
	add := func(code, val uint32) {
		opts = binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32(opts, code), val)
	}
	mask := e.GetOptMask()
	if mask&tcpiOptSack != 0 {
		add(unix.TCPOPT_SACK_PERMITTED, 0)
	}
	if mask&tcpiOptWscale != 0 {
		add(unix.TCPOPT_WINDOW, e.GetSndWscale()|e.GetRcvWscale()<<16)
	}
	if mask&tcpiOptTimestamps != 0 {
		add(unix.TCPOPT_TIMESTAMP, 0)
	}
	add(unix.TCPOPT_MAXSEG, e.GetMssClamp())
	b := m.p.b
	b.Call(fmt.Sprintf("set the handshake options (mask %#x, mss %d) of %v", mask, e.GetMssClamp(), m.k), unix.SYS_SETSOCKOPT,
		uint64(m.fd), unix.IPPROTO_TCP, unix.TCP_REPAIR_OPTIONS, b.Bytes(opts), uint64(len(opts)))
	if mask&tcpiOptTimestamps != 0 {
		m.setInt(unix.IPPROTO_TCP, unix.TCP_TIMESTAMP, e.GetTimestamp(), "set the timestamp")
	}
}

// refillQueues plans queuing the received bytes and the sent,
// unacknowledged ones, with room enough for both first (the dumped
// buffer sizes are set afterwards). The bytes never sent wait for
// EndTCPRepair.
func (m *inetMaker) refillQueues(st *TCPStream) {
	sent := st.Out[:len(st.Out)-int(st.Entry.GetUnsqLen())]
	if len(st.In) > 0 {
		m.setInt(unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, maxSockBuf, "grow the receive buffer to refill")
		m.setInt(unix.IPPROTO_TCP, unix.TCP_REPAIR_QUEUE, tcpRecvQueue, "select the receive queue")
		m.send(st.In, "receive")
	}
	if len(sent) > 0 || st.Entry.GetUnsqLen() > 0 {
		m.setInt(unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, maxSockBuf, "grow the send buffer to refill")
	}
	if len(sent) > 0 {
		m.setInt(unix.IPPROTO_TCP, unix.TCP_REPAIR_QUEUE, tcpSendQueue, "select the send queue")
		m.send(sent, "send")
	}
	m.setInt(unix.IPPROTO_TCP, unix.TCP_REPAIR_QUEUE, tcpNoQueue, "select no queue")
}

// send plans queuing data on the selected queue, in chunks.
func (m *inetMaker) send(data []byte, name string) {
	b := m.p.b
	for off := 0; off < len(data); off += repairChunk {
		chunk := data[off:min(off+repairChunk, len(data))]
		b.Call(fmt.Sprintf("queue bytes %d-%d of the %s queue of %v", off, off+len(chunk), name, m.k), unix.SYS_SENDTO,
			uint64(m.fd), b.Bytes(chunk), uint64(len(chunk)), unix.MSG_DONTWAIT, 0, 0)
	}
}

// window plans setting struct tcp_repair_window, if dumped.
func (m *inetMaker) window(e *tcpstream.TcpStreamEntry) {
	if e.SndWnd == nil {
		return
	}
	var w []byte
	fin := m.finIn()
	for _, v := range []uint32{e.GetSndWl1(), e.GetSndWnd(), e.GetMaxWindow(), e.GetRcvWnd() + fin, e.GetRcvWup() - fin} {
		w = binary.LittleEndian.AppendUint32(w, v)
	}
	b := m.p.b
	b.Call(fmt.Sprintf("set the windows of %v", m.k), unix.SYS_SETSOCKOPT, uint64(m.fd), unix.IPPROTO_TCP,
		unix.TCP_REPAIR_WINDOW, b.Bytes(w), uint64(len(w)))
}

// TCPRepaired is a connection a restored task holds in repair mode.
type TCPRepaired struct {
	Pid, Fd int    // the task and one of its descriptors of it
	ID      uint32 // its file id
}

// Repaired lists the connections that task pid made in repair mode,
// each at one of its descriptors (held: a descriptor by file id).
func (t TCPLeft) Repaired(pid int, held map[uint32]int) []TCPRepaired {
	var out []TCPRepaired
	for _, id := range t.Repair {
		out = append(out, TCPRepaired{Pid: pid, Fd: held[id], ID: id})
	}
	return out
}

// TCPShut is a closed TCP socket a restored task holds, to shut down
// or to connect again.
type TCPShut struct {
	Pid, Fd int    // the task and one of its descriptors of it
	ID      uint32 // its file id
	How     skopts.SkShutdown
	Ended   bool // a connection that ended, which CloseTCP connects again
}

// Closed lists the closed TCP sockets a restored task holds that
// CloseTCP must shut down or connect again (held: a descriptor by file
// id).
func (t TCPLeft) Closed(pid int, held map[uint32]int) []TCPShut {
	byID := map[uint32]*TCPShut{}
	var ids []uint32
	add := func(id uint32) *TCPShut {
		if byID[id] == nil {
			byID[id] = &TCPShut{Pid: pid, Fd: held[id], ID: id}
			ids = append(ids, id)
		}
		return byID[id]
	}
	for id, how := range t.Shut {
		add(id).How = how
	}
	for _, id := range t.Ended {
		add(id).Ended = true
	}
	slices.Sort(ids)
	out := make([]TCPShut, 0, len(ids))
	for _, id := range ids {
		out = append(out, *byID[id])
	}
	return out
}

// CloseTCP finishes the closed TCP sockets, before the tasks run. A
// connection that ended, whose stream is in the images, is connected
// again (reconnectEnded) to have its peer's address and the bytes it
// had not read. Then, as criu does, it shuts down a connection
// --tcp-close restores closed, both ways, and a socket whose connection
// had ended, as it was. Such a socket never connected here, so shutdown
// fails with ENOTCONN, but marks it shut down all the same: the task
// reads end-of-file from it, polls POLLHUP and gets EPIPE from a write.
// amber does it through a copy of each socket.
func CloseTCP(socks []TCPShut, idx map[uint32]*fdinfo.FileEntry, streams map[uint32]*TCPStream) error {
	for _, h := range socks {
		s, err := proc.CopyFd(h.Pid, h.Fd)
		if err != nil {
			return fmt.Errorf("a closed TCP socket: %w", err)
		}
		if h.Ended {
			err = reconnectEnded(s, idx[h.ID], streams)
		}
		if err == nil && h.How != skopts.SkShutdown_NONE {
			if err = unix.Shutdown(s, int(h.How)-1); errors.Is(err, unix.ENOTCONN) {
				err = nil
			}
			if err != nil {
				err = fmt.Errorf("shut down the closed TCP socket (%v): %w", h.How, err)
			}
		}
		unix.Close(s)
		if err != nil {
			return fmt.Errorf("fd %d of pid %d: %w", h.Fd, h.Pid, err)
		}
	}
	return nil
}

// EndTCPRepair brings the restored connections to their dumped state,
// once every task is in place: it checks that each one's queues hold
// what the dump saw, replays the FINs of the half-closed ones that send
// nothing (finSteps), then on each writes the bytes that were never sent
// and replays the other FINs. The connections stay in repair mode:
// RepairEnd.Leave turns it off, once the network lock is lifted. amber
// does it through a copy of each socket (pidfd_getfd), as root: a task
// may have dropped its privileges by now.
func EndTCPRepair(socks []TCPRepaired, idx map[uint32]*fdinfo.FileEntry, streams map[uint32]*TCPStream) (_ *RepairEnd, err error) {
	e := &RepairEnd{}
	defer func() {
		if err != nil {
			e.Close()
		}
	}()
	for _, r := range socks {
		c, err := takeRestored(r, idx, streams)
		if err != nil {
			return nil, err
		}
		e.conns = append(e.conns, c)
		if err := c.checkQueues(); err != nil {
			return nil, c.errorf("%w", err)
		}
	}
	if err := e.replay(); err != nil {
		return nil, err
	}
	return e, nil
}

// replay puts every connection in its dumped state before any sends a
// byte or a FIN to a peer (finSteps).
func (e *RepairEnd) replay() error {
	for _, c := range e.conns {
		quiet, _ := finSteps(c.k.e.GetState())
		if err := c.replayFINs(quiet); err != nil {
			return err
		}
	}
	for _, c := range e.conns {
		if err := c.sendUnsent(); err != nil {
			return err
		}
		_, loud := finSteps(c.k.e.GetState())
		if err := c.replayFINs(loud); err != nil {
			return err
		}
	}
	return nil
}

// RepairEnd is amber's copies of the restored connections, in their
// dumped state and still in repair mode.
type RepairEnd struct {
	conns []*restoredConn
}

// Leave turns repair mode off on every connection and gives SO_REUSEADDR
// back, then closes amber's copies. The kernel sends a window probe on
// each (and the SYN of one that was connecting): once the lock is lifted
// they reach the peers, and a connection whose peer is gone learns it at
// once, from the peer's reset, not at its first retransmission.
func (e *RepairEnd) Leave() error {
	if e == nil {
		return nil
	}
	defer e.Close()
	for _, c := range e.conns {
		if err := c.leaveRepair(); err != nil {
			return err
		}
	}
	return nil
}

// Close closes amber's copies of the connections.
func (e *RepairEnd) Close() {
	if e == nil {
		return
	}
	for _, c := range e.conns {
		unix.Close(c.s)
	}
	e.conns = nil
}

// restoredConn is amber's copy of a restored connection.
type restoredConn struct {
	TCPRepaired
	s  int
	k  *inetImage
	st *TCPStream
}

func (c *restoredConn) errorf(format string, args ...any) error {
	return fmt.Errorf("pid %d fd %d: %v: %w", c.Pid, c.Fd, c.k, fmt.Errorf(format, args...))
}

// takeRestored copies a restored connection into amber.
func takeRestored(r TCPRepaired, idx map[uint32]*fdinfo.FileEntry, streams map[uint32]*TCPStream) (*restoredConn, error) {
	ie := idx[r.ID].GetIsk()
	if ie == nil {
		return nil, fmt.Errorf("file id %d: not an inet socket", r.ID)
	}
	k, err := readInetImage(ie)
	if err != nil {
		return nil, err
	}
	c := &restoredConn{TCPRepaired: r, k: k, st: streams[ie.GetIno()]}
	if c.st == nil {
		return nil, c.errorf("no %s in the images", tcpStreamName(ie.GetIno()))
	}
	if c.s, err = proc.CopyFd(r.Pid, r.Fd); err != nil {
		return nil, c.errorf("%w", err)
	}
	return c, nil
}

// checkQueues verifies that the plan queued every byte: a send the
// kernel cut short is no error to the executor. The send queue must end
// where the sent bytes did (write_seq moves only with writes); the
// receive queue must hold at least the dumped bytes (a retransmission
// from a peer may have added some since).
func (c *restoredConn) checkQueues() error {
	e := c.st.Entry
	if c.k.e.GetState() == tcpSynSent {
		return nil // its queues are empty, its SYN not sent yet
	}
	if err := unix.SetsockoptInt(c.s, unix.IPPROTO_TCP, unix.TCP_REPAIR_QUEUE, tcpSendQueue); err != nil {
		return fmt.Errorf("select its send queue: %w", err)
	}
	end, err := unix.GetsockoptInt(c.s, unix.IPPROTO_TCP, unix.TCP_QUEUE_SEQ)
	unix.SetsockoptInt(c.s, unix.IPPROTO_TCP, unix.TCP_REPAIR_QUEUE, tcpNoQueue)
	if err != nil {
		return fmt.Errorf("end of its send queue: %w", err)
	}
	if want := e.GetOutqSeq() - finOut(c.k.e.GetState()) - e.GetUnsqLen(); uint32(end) != want {
		return fmt.Errorf("its send queue ends at sequence %d after restore, want %d: %d bytes missing",
			uint32(end), want, int32(want-uint32(end)))
	}
	n, err := unix.IoctlGetInt(c.s, unix.SIOCINQ)
	if err != nil {
		return fmt.Errorf("length of its receive queue: %w", err)
	}
	if uint32(n) < e.GetInqLen() {
		return fmt.Errorf("its receive queue holds %d bytes after restore, want %d", n, e.GetInqLen())
	}
	return nil
}

// leaveRepair turns repair mode off and gives SO_REUSEADDR back; a
// connection in SYN_SENT then connects again, sending its SYN.
func (c *restoredConn) leaveRepair() error {
	if err := unix.SetsockoptInt(c.s, unix.IPPROTO_TCP, unix.TCP_REPAIR, unix.TCP_REPAIR_OFF); err != nil {
		return c.errorf("turn repair mode off: %w", err)
	}
	if c.k.e.GetState() == tcpSynSent {
		if err := c.connect(); err != nil {
			return err
		}
	}
	if c.k.e.GetOpts().GetReuseaddr() {
		if err := unix.SetsockoptInt(c.s, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
			return c.errorf("SO_REUSEADDR: %w", err)
		}
	}
	return nil
}

// connect connects a restored connection that was sending its SYN
// when dumped: non-blocking, the SYN goes out, the task finds the
// connection under way as it was.
func (c *restoredConn) connect() error {
	flags, err := unix.FcntlInt(uintptr(c.s), unix.F_GETFL, 0)
	if err != nil {
		return c.errorf("F_GETFL: %w", err)
	}
	if _, err := unix.FcntlInt(uintptr(c.s), unix.F_SETFL, flags|unix.O_NONBLOCK); err != nil {
		return c.errorf("F_SETFL: %w", err)
	}
	var sa unix.Sockaddr
	if a := c.k.dst.Addr(); a.Is4() {
		sa = &unix.SockaddrInet4{Port: int(c.k.dst.Port()), Addr: a.As4()}
	} else {
		sa = &unix.SockaddrInet6{Port: int(c.k.dst.Port()), Addr: a.As16()}
	}
	err = unix.Connect(c.s, sa)
	if _, ferr := unix.FcntlInt(uintptr(c.s), unix.F_SETFL, flags); ferr != nil && err == nil {
		err = ferr
	}
	if err != nil && !errors.Is(err, unix.EINPROGRESS) {
		return c.errorf("connect again to send its SYN: %w", err)
	}
	return nil
}

// unsentTimeout bounds the wait for room to write the bytes never sent.
const unsentTimeout = 10 * time.Second

// sendUnsent writes the bytes of the send queue that were never sent,
// as the task had written them: out of repair mode, which queues only
// bytes that count as sent, and back in it, for its FIN to follow them
// (replayFINs). Leaving repair mode that way sends no window probe: the
// connection sends what its peer's window lets it. The send buffer grows for the time of
// the write: the sent bytes, queued again in repair mode, may take more
// of it than they did in the dumped socket, and nothing frees any before
// the tasks run (the peer's receive queue may be full, and its reader
// stopped), so that at the dumped size the last bytes could never be
// written. Its size and locks are given back afterwards.
func (c *restoredConn) sendUnsent() error {
	unsent := c.st.Out[len(c.st.Out)-int(c.st.Entry.GetUnsqLen()):]
	if len(unsent) == 0 {
		return nil
	}
	restore, err := growBuffer(c.s, unix.SO_SNDBUF, unix.SO_SNDBUFFORCE)
	if err != nil {
		return c.errorf("to write the bytes never sent: %w", err)
	}
	if err := unix.SetsockoptInt(c.s, unix.IPPROTO_TCP, unix.TCP_REPAIR, unix.TCP_REPAIR_OFF_NO_WP); err != nil {
		return c.errorf("turn repair mode off to write the bytes never sent: %w", err)
	}
	deadline := time.Now().Add(unsentTimeout)
	for len(unsent) > 0 {
		n, err := unix.SendmsgN(c.s, unsent, nil, nil, unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL)
		switch {
		case errors.Is(err, unix.EAGAIN) && time.Now().Before(deadline):
			unix.Poll([]unix.PollFd{{Fd: int32(c.s), Events: unix.POLLOUT}}, 100)
		case errors.Is(err, unix.EINTR):
		case err != nil:
			return c.errorf("write the %d bytes never sent: %w", len(unsent), err)
		default:
			unsent = unsent[n:]
		}
	}
	if err := restore(); err != nil {
		return c.errorf("%w", err)
	}
	if err := unix.SetsockoptInt(c.s, unix.IPPROTO_TCP, unix.TCP_REPAIR, unix.TCP_REPAIR_ON); err != nil {
		return c.errorf("turn repair mode on again after writing the bytes never sent: %w", err)
	}
	return nil
}

// growBuffer makes socket s's buffer (opt: SO_SNDBUF or SO_RCVBUF,
// force: its SO_*BUFFORCE) as large as can be, and returns how to give
// back its size and its SO_BUF_LOCK (which SO_*BUFFORCE sets).
func growBuffer(s, opt, force int) (func() error, error) {
	size, err := unix.GetsockoptInt(s, unix.SOL_SOCKET, opt)
	if err != nil {
		return nil, fmt.Errorf("getsockopt %s: %w", bufName(opt), err)
	}
	// SO_BUF_LOCK is Linux 5.14's: before it, SO_*BUFFORCE locks the
	// size as the plan's did.
	lock, lockErr := unix.GetsockoptInt(s, unix.SOL_SOCKET, unix.SO_BUF_LOCK)
	if err := unix.SetsockoptInt(s, unix.SOL_SOCKET, force, maxSockBuf); err != nil {
		return nil, fmt.Errorf("grow %s: %w", bufName(opt), err)
	}
	return func() error {
		// The kernel doubles what it is given: size is the doubled one.
		if err := unix.SetsockoptInt(s, unix.SOL_SOCKET, force, size/2); err != nil {
			return fmt.Errorf("give %s its size %d back: %w", bufName(opt), size, err)
		}
		if lockErr != nil {
			return nil
		}
		if err := unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_BUF_LOCK, lock); err != nil {
			return fmt.Errorf("give SO_BUF_LOCK %#x back: %w", lock, err)
		}
		return nil
	}, nil
}

func bufName(opt int) string {
	if opt == unix.SO_RCVBUF {
		return "the receive buffer"
	}
	return "the send buffer"
}
