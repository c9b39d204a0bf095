package namespaces

import (
	"encoding/binary"
	"strings"
	"testing"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/netdev"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
)

func link(typ netdev.NdType, name string) *netdev.NetDeviceEntry {
	return &netdev.NetDeviceEntry{Type: typ.Enum(), Name: proto.String(name), Ifindex: proto.Uint32(2),
		Mtu: proto.Uint32(1500), Flags: proto.Uint32(unix.IFF_UP)}
}

// TestPlanLinks: the loopback is set up, a veth with an outside end
// given is created, and every other case is an error naming the link
// and, for a veth, the option that would restore it.
func TestPlanLinks(t *testing.T) {
	lo, v := link(netdev.NdType_LOOPBACK, "lo"), link(netdev.NdType_VETH, "eth0")
	steps, err := planLinks("netdev-9.img", 9, []*netdev.NetDeviceEntry{lo, v},
		map[string]ExtVeth{"eth0": {Name: "veth-out", Bridge: "br0"}}, true)
	if err != nil || len(steps) != 2 || steps[0].peer != nil || steps[1].peer == nil || *steps[1].peer != (ExtVeth{"veth-out", "br0"}) {
		t.Fatalf("plan: %+v, %v", steps, err)
	}
	inside := link(netdev.NdType_VETH, "eth1")
	inside.PeerNsid = proto.Uint32(9)
	enslaved := link(netdev.NdType_VETH, "eth2")
	enslaved.Master = proto.Uint32(5)
	outsideNsid := link(netdev.NdType_VETH, "eth3")
	outsideNsid.PeerNsid = proto.Uint32(1) // a CRIU image: the peer in the dumper's namespace
	for _, c := range []struct {
		links []*netdev.NetDeviceEntry
		veths map[string]ExtVeth
		want  []string
	}{
		{[]*netdev.NetDeviceEntry{lo, v}, nil, []string{"netdev-9.img", "veth eth0", "--external veth[eth0]:OUTNAME"}},
		{[]*netdev.NetDeviceEntry{outsideNsid}, nil, []string{"veth eth3", "--external veth[eth3]"}},
		{[]*netdev.NetDeviceEntry{inside}, map[string]ExtVeth{"eth1": {Name: "x"}}, []string{"veth eth1", "same network namespace"}},
		{[]*netdev.NetDeviceEntry{enslaved}, nil, []string{"link eth2", "enslaved"}},
		{[]*netdev.NetDeviceEntry{link(netdev.NdType_TUN, "tun0")}, nil, []string{"link tun0", "TUN"}},
		{[]*netdev.NetDeviceEntry{lo}, map[string]ExtVeth{"eth9": {Name: "x"}}, []string{"veth[eth9]", "no veth eth9"}},
	} {
		_, err := planLinks("netdev-9.img", 9, c.links, c.veths, true)
		for _, w := range c.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("plan of %v with %v: %v; want an error with %q", c.links, c.veths, err, w)
			}
		}
	}
	if steps, err := planLinks("netdev-9.img", 9, []*netdev.NetDeviceEntry{outsideNsid}, map[string]ExtVeth{"eth3": {Name: "o"}}, true); err != nil || len(steps) != 1 {
		t.Errorf("plan of a veth whose peer is in another dumped namespace, with its outside end: %v", err)
	}
}

// TestParseExtVeth reads CRIU's --external veth[IFNAME]:OUTNAME[@BRIDGE].
func TestParseExtVeth(t *testing.T) {
	name, ext, ok, err := ParseExtVeth("veth[eth0]:vout@br0")
	if !ok || err != nil || name != "eth0" || ext != (ExtVeth{"vout", "br0"}) {
		t.Errorf("veth[eth0]:vout@br0: %q %+v %v %v", name, ext, ok, err)
	}
	if name, ext, ok, err := ParseExtVeth("veth[eth0]:vout"); !ok || err != nil || name != "eth0" || ext != (ExtVeth{Name: "vout"}) {
		t.Errorf("veth[eth0]:vout: %q %+v %v %v", name, ext, ok, err)
	}
	if _, _, ok, _ := ParseExtVeth("mnt[a]:b"); ok {
		t.Error("mnt[a]:b read as a veth")
	}
	for _, bad := range []string{"veth[eth0]", "veth[]:x", "veth[eth0]:", "veth[eth0]:a-name-far-too-long", "veth[eth0]:x@", "veth[a/b]:x"} {
		if _, _, ok, err := ParseExtVeth(bad); !ok || err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("%q: %v %v; want an error naming it", bad, ok, err)
		}
	}
}

// route is an rtmsg payload of table, with a gateway if gw.
func route(table uint8, flags uint32, gw bool) []byte {
	p := make([]byte, unix.SizeofRtMsg)
	p[0], p[4] = unix.AF_INET, table
	binary.NativeEndian.PutUint32(p[8:], flags)
	if gw {
		p = append(p, nl.NewRtAttr(unix.RTA_GATEWAY, []byte{10, 0, 0, 1}).Serialize()...)
	}
	p = append(p, nl.NewRtAttr(unix.RTA_OIF, []byte{2, 0, 0, 0}).Serialize()...)
	return p
}

// TestRtDumpRoundTrip: a saved dump keeps the main table's routes, not
// cloned ones nor other tables', and reads back message for message;
// restore sends routes without a gateway first and drops the
// linkdown flag; a file of another kind is refused.
func TestRtDumpRoundTrip(t *testing.T) {
	viaGw, direct := route(unix.RT_TABLE_MAIN, unix.RTNH_F_LINKDOWN, true), route(unix.RT_TABLE_MAIN, 0, false)
	odd := append(route(unix.RT_TABLE_MAIN, 0, false), 1, 2) // a length not a multiple of 4
	msgs := [][]byte{viaGw, route(unix.RT_TABLE_LOCAL, 0, false), route(unix.RT_TABLE_MAIN, unix.RTM_F_CLONED, false), direct, odd}
	b := encodeRt(routeDump, msgs)
	if binary.NativeEndian.Uint32(b) != routeDumpMagic || len(b)%4 != 0 {
		t.Fatalf("encoded: % x", b[:8])
	}
	got, err := decodeRt("route-9.img", routeDump, b)
	if err != nil || len(got) != 3 || string(got[0].payload) != string(viaGw) || string(got[1].payload) != string(direct) || string(got[2].payload) != string(odd) {
		t.Fatalf("decoded %d messages, %v", len(got), err)
	}
	order := restoreOrder(got)
	if string(order[0].payload) != string(direct) || string(order[2].payload) != string(viaGw) {
		t.Errorf("restore order does not put the gateway's route last")
	}
	if f := binary.NativeEndian.Uint32(requestable(got[0])[8:]); f&unix.RTNH_F_LINKDOWN != 0 || binary.NativeEndian.Uint32(viaGw[8:]) != unix.RTNH_F_LINKDOWN {
		t.Errorf("requestable: flags %#x (or the dump's own changed)", f)
	}
	if _, err := decodeRt("ifaddr-9.img", addrDump, b); err == nil || !strings.Contains(err.Error(), "ifaddr-9.img") {
		t.Errorf("routes read as addresses: %v", err)
	}
	if _, err := decodeRt("route-9.img", routeDump, b[:len(b)-4]); err == nil || !strings.Contains(err.Error(), "offset") {
		t.Errorf("truncated dump: %v", err)
	}
	if m, err := decodeRt("route6-9.img", route6Dump, nil); err != nil || m != nil {
		t.Errorf("empty image (CRIU's where ip saved nothing): %v %v", m, err)
	}
}
