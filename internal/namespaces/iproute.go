package namespaces

// The addresses and routes of a network namespace, in the images CRIU
// has "ip addr save", "ip route save" and "ip -6 route save" write
// (ifaddr-ID.img, route-ID.img, route6-ID.img): a 4-byte magic of
// iproute2's, then the kernel's own RTM_NEWADDR or RTM_NEWROUTE
// messages as a dump gave them, each padded to 4 bytes. Keeping
// iproute2's format lets CRIU restore amber's images ("ip ... restore")
// and amber CRIU's, and "ip addr showdump" read them.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"amber/internal/image"
)

// The magics iproute2 starts its saved dumps with.
const (
	addrDumpMagic  = 0x47361222
	routeDumpMagic = 0x45311224
)

// rtDump is one kind of saved dump: what to ask the kernel, which
// answers to keep, and how to order them for restore.
type rtDump struct {
	what   string // for messages
	magic  uint32
	get    uint16 // RTM_GETADDR, RTM_GETROUTE
	answer uint16 // RTM_NEWADDR, RTM_NEWROUTE
	family uint8
	keep   func(payload []byte) bool
}

var (
	addrDump   = rtDump{"addresses", addrDumpMagic, unix.RTM_GETADDR, unix.RTM_NEWADDR, unix.AF_UNSPEC, keepAll}
	routeDump  = rtDump{"IPv4 routes", routeDumpMagic, unix.RTM_GETROUTE, unix.RTM_NEWROUTE, unix.AF_INET, keepMainRoute}
	route6Dump = rtDump{"IPv6 routes", routeDumpMagic, unix.RTM_GETROUTE, unix.RTM_NEWROUTE, unix.AF_INET6, keepMainRoute}
)

func keepAll([]byte) bool { return true }

// keepMainRoute keeps the routes "ip route save" keeps: those of the
// main table, not cloned (cached) ones.
func keepMainRoute(p []byte) bool {
	if len(p) < unix.SizeofRtMsg {
		return false
	}
	table, flags := p[4], binary.NativeEndian.Uint32(p[8:12])
	return table == unix.RT_TABLE_MAIN && flags&unix.RTM_F_CLONED == 0
}

// dumpRt asks the calling thread's network namespace for d and writes
// it to p.
func dumpRt(p image.Path, d rtDump) error {
	req := nl.NewNetlinkRequest(int(d.get), unix.NLM_F_DUMP)
	req.AddData(&rtGenMsg{family: d.family, size: dumpHeaderSize(d)})
	var msgs [][]byte
	err := retryInterrupted(func() error {
		var err error
		msgs, err = req.Execute(unix.NETLINK_ROUTE, d.answer)
		return err
	})
	if errors.Is(err, unix.EAFNOSUPPORT) && d.family == unix.AF_INET6 {
		return nil // a kernel without IPv6: no image, as CRIU's
	}
	if err != nil {
		return fmt.Errorf("%s: dump %s: %w", p, d.what, err)
	}
	return p.WriteFile(encodeRt(d, msgs))
}

// dumpHeaderSize is the size of the request's family header: a whole
// ifaddrmsg or rtmsg, as iproute2 sends.
func dumpHeaderSize(d rtDump) int {
	if d.get == unix.RTM_GETADDR {
		return unix.SizeofIfAddrmsg
	}
	return unix.SizeofRtMsg
}

// rtGenMsg is a dump request's header: its family, zeros after.
type rtGenMsg struct {
	family uint8
	size   int
}

func (m *rtGenMsg) Len() int { return m.size }
func (m *rtGenMsg) Serialize() []byte {
	b := make([]byte, m.size)
	b[0] = m.family
	return b
}

// encodeRt is iproute2's saved dump of the kept payloads of msgs.
func encodeRt(d rtDump, msgs [][]byte) []byte {
	b := binary.NativeEndian.AppendUint32(nil, d.magic)
	for _, m := range msgs {
		if !d.keep(m) {
			continue
		}
		var h [unix.SizeofNlMsghdr]byte
		binary.NativeEndian.PutUint32(h[0:], uint32(unix.SizeofNlMsghdr+len(m)))
		binary.NativeEndian.PutUint16(h[4:], d.answer)
		binary.NativeEndian.PutUint16(h[6:], unix.NLM_F_MULTI)
		b = append(b, h[:]...)
		b = append(b, m...)
		b = append(b, make([]byte, nlAlign(len(m))-len(m))...)
	}
	return b
}

func nlAlign(n int) int { return (n + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1) }

// rtMessage is one message of a saved dump.
type rtMessage struct {
	typ     uint16
	payload []byte
}

// decodeRt reads a saved dump of kind d from b (the contents of image
// path, for messages): its messages, each of d's answer type.
func decodeRt(path string, d rtDump, b []byte) ([]rtMessage, error) {
	if len(b) == 0 {
		return nil, nil // CRIU leaves an empty image where "ip" saved nothing
	}
	if len(b) < 4 || binary.NativeEndian.Uint32(b) != d.magic {
		return nil, fmt.Errorf("%s: not a saved dump of %s (magic %#x expected)", path, d.what, d.magic)
	}
	var out []rtMessage
	for off := 4; off < len(b); {
		if len(b)-off < unix.SizeofNlMsghdr {
			return nil, fmt.Errorf("%s: offset %d: truncated message header", path, off)
		}
		n := int(binary.NativeEndian.Uint32(b[off:]))
		typ := binary.NativeEndian.Uint16(b[off+4:])
		if n < unix.SizeofNlMsghdr || off+n > len(b) {
			return nil, fmt.Errorf("%s: offset %d: message of %d bytes in %d", path, off, n, len(b)-off)
		}
		if typ != d.answer {
			return nil, fmt.Errorf("%s: offset %d: message of type %d, want %d", path, off, typ, d.answer)
		}
		out = append(out, rtMessage{typ, b[off+unix.SizeofNlMsghdr : off+n]})
		off += nlAlign(n)
	}
	return out, nil
}

// restoreOrder orders routes as iproute2's restore does: routes without
// a gateway (to the namespace's own addresses and networks) first, so
// that a gateway is reachable when its route comes. Addresses keep
// their order.
func restoreOrder(msgs []rtMessage) []rtMessage {
	var direct, via []rtMessage
	for _, m := range msgs {
		if m.typ == unix.RTM_NEWROUTE && hasGateway(m.payload) {
			via = append(via, m)
		} else {
			direct = append(direct, m)
		}
	}
	return append(direct, via...)
}

// hasGateway tells whether an rtmsg payload has RTA_GATEWAY or
// RTA_MULTIPATH.
func hasGateway(p []byte) bool {
	if len(p) < unix.SizeofRtMsg {
		return false
	}
	attrs, err := nl.ParseRouteAttr(p[unix.SizeofRtMsg:])
	if err != nil {
		return false
	}
	for _, a := range attrs {
		if a.Attr.Type == unix.RTA_GATEWAY || a.Attr.Type == unix.RTA_MULTIPATH {
			return true
		}
	}
	return false
}

// restoreRt sends the saved dump at p, of kind d, to the calling
// thread's network namespace. What exists already (the loopback's
// addresses, the kernel's routes of an address) is left as it is.
func restoreRt(p image.Path, d rtDump) error {
	b, err := readAll(p)
	if err != nil {
		return err
	}
	msgs, err := decodeRt(p.String(), d, b)
	if err != nil {
		return err
	}
	for i, m := range restoreOrder(msgs) {
		req := nl.NewNetlinkRequest(int(m.typ), unix.NLM_F_CREATE|unix.NLM_F_ACK)
		req.AddRawData(requestable(m))
		if _, err := req.Execute(unix.NETLINK_ROUTE, 0); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("%s: %s, message %d: %w", p, d.what, i, err)
		}
	}
	return nil
}

// requestable is the payload of m as a request may carry it: a route
// whose link had no carrier at dump is dumped "linkdown", a flag the
// kernel reports but refuses in a new route (EINVAL).
func requestable(m rtMessage) []byte {
	if m.typ != unix.RTM_NEWROUTE || len(m.payload) < unix.SizeofRtMsg {
		return m.payload
	}
	p := bytes.Clone(m.payload)
	flags := binary.NativeEndian.Uint32(p[8:12])
	binary.NativeEndian.PutUint32(p[8:12], flags&^(unix.RTNH_F_DEAD|unix.RTNH_F_LINKDOWN))
	return p
}

// retryInterrupted runs a dump again while the kernel says it was
// interrupted by a change (NLM_F_DUMP_INTR), a few times.
func retryInterrupted(dump func() error) error {
	var err error
	for range 5 {
		if err = dump(); !errors.Is(err, nl.ErrDumpInterrupted) {
			return err
		}
	}
	return err
}
