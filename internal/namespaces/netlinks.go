package namespaces

// The links of a network namespace (netdev-ID.img), as CRIU's net.c
// dumps and restores them: the loopback, and veth links whose peer is
// outside the namespace. On restore such a veth is made again with its
// peer in amber's namespace, under the name CRIU's --external
// veth[IFNAME]:OUTNAME[@BRIDGE] gives (and put in BRIDGE); and bridges,
// made again with their index, address and MTU. Links of other kinds
// (macvlan, tun, ...) and enslaved links are refused at dump, naming
// the link.

import (
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/netdev"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
)

// readLinks lists the links of the calling thread's network namespace,
// network namespace id nsID of the dump, as CRIU's NetDeviceEntry.
func readLinks(nsID uint32) ([]*netdev.NetDeviceEntry, error) {
	var links []netlink.Link
	err := retryInterrupted(func() error {
		var err error
		links, err = netlink.LinkList()
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	out := make([]*netdev.NetDeviceEntry, 0, len(links))
	for _, l := range links {
		e, err := linkEntry(l, nsID)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// linkEntry is the NetDeviceEntry of link l of namespace nsID.
func linkEntry(l netlink.Link, nsID uint32) (*netdev.NetDeviceEntry, error) {
	a := l.Attrs()
	e := &netdev.NetDeviceEntry{
		Ifindex: proto.Uint32(uint32(a.Index)), Mtu: proto.Uint32(uint32(a.MTU)),
		Flags: proto.Uint32(a.RawFlags), Name: proto.String(a.Name),
	}
	switch {
	case a.EncapType == "loopback":
		e.Type = netdev.NdType_LOOPBACK.Enum()
	case l.Type() == "bridge":
		e.Type = netdev.NdType_BRIDGE.Enum()
		e.Address = a.HardwareAddr
	case l.Type() == "veth":
		e.Type = netdev.NdType_VETH.Enum()
		e.Address = a.HardwareAddr
		e.PeerIfindex = proto.Uint32(uint32(a.ParentIndex))
		if a.NetNsID < 0 { // no IFLA_LINK_NETNSID: the peer is in this namespace
			e.PeerNsid = proto.Uint32(nsID)
		}
	default:
		return nil, fmt.Errorf("link %s (index %d) of kind %s: amber dumps the loopback, veth links "+
			"and bridges (dump with --empty-ns net to leave the network namespace to a container engine)", a.Name, a.Index, l.Type())
	}
	if a.MasterIndex != 0 {
		e.Master = proto.Uint32(uint32(a.MasterIndex))
	}
	return e, nil
}

// ExtVeth is the outside end of a veth of the images: CRIU's
// --external veth[IFNAME]:OUTNAME[@BRIDGE].
type ExtVeth struct {
	Name   string // OUTNAME, the peer made in amber's namespace
	Bridge string // "" for none
}

// ParseExtVeth reads --external veth[IFNAME]:OUTNAME[@BRIDGE]. ok is
// false for another kind of external resource.
func ParseExtVeth(val string) (ifname string, ext ExtVeth, ok bool, err error) {
	rest, ok := strings.CutPrefix(val, "veth[")
	if !ok {
		return "", ExtVeth{}, false, nil
	}
	ifname, out, found := strings.Cut(rest, "]:")
	name, bridge, hasBridge := strings.Cut(out, "@")
	if !found || !validLinkName(ifname) || !validLinkName(name) || (hasBridge && !validLinkName(bridge)) {
		return "", ExtVeth{}, true, fmt.Errorf("external %q: want veth[IFNAME]:OUTNAME[@BRIDGE], names of 1 to %d bytes", val, unix.IFNAMSIZ-1)
	}
	return ifname, ExtVeth{Name: name, Bridge: bridge}, true, nil
}

func validLinkName(s string) bool {
	return s != "" && len(s) < unix.IFNAMSIZ && !strings.ContainsAny(s, "/ \t\n:@")
}

// linkStep is what the restore does for one link of netdev-ID.img.
type linkStep struct {
	link *netdev.NetDeviceEntry
	// peer is the outside end of a veth to create; nil for the
	// loopback, which the new namespace has (its MTU and flags are
	// set), and for a bridge, made with its name, index, address, MTU
	// and flags.
	peer *ExtVeth
}

// planLinks decides how each link of netdev-ID.img of network namespace
// nsID (at path, for messages) is restored, with the outside ends veths
// gives (by the veth's name). Every veth needs one; if all, the tree's
// only network namespace, every entry of veths must name a veth of the
// images.
func planLinks(path string, nsID uint32, links []*netdev.NetDeviceEntry, veths map[string]ExtVeth, all bool) ([]linkStep, error) {
	steps := make([]linkStep, 0, len(links))
	used := map[string]bool{}
	for _, l := range links {
		if l.Master != nil {
			return nil, fmt.Errorf("%s: link %s is enslaved to link %d: not supported", path, l.GetName(), l.GetMaster())
		}
		switch l.GetType() {
		case netdev.NdType_LOOPBACK, netdev.NdType_BRIDGE:
			steps = append(steps, linkStep{link: l})
		case netdev.NdType_VETH:
			if l.PeerNsid != nil && l.GetPeerNsid() == nsID {
				return nil, fmt.Errorf("%s: veth %s has its peer (index %d) in the same network namespace: not supported", path, l.GetName(), l.GetPeerIfindex())
			}
			ext, ok := veths[l.GetName()]
			if !ok {
				return nil, fmt.Errorf("%s: veth %s has its peer outside the network namespace: restore with --external veth[%s]:OUTNAME[@BRIDGE] to make its outside end OUTNAME", path, l.GetName(), l.GetName())
			}
			used[l.GetName()] = true
			steps = append(steps, linkStep{link: l, peer: &ext})
		default:
			return nil, fmt.Errorf("%s: link %s of type %s: amber restores the loopback, veth links and bridges only", path, l.GetName(), l.GetType())
		}
	}
	for name := range veths {
		if all && !used[name] {
			return nil, fmt.Errorf("--external veth[%s]: %s has no veth %s", name, path, name)
		}
	}
	return steps, nil
}

// restoreLink carries out step s in the calling thread's network
// namespace; host is a descriptor of amber's, where a veth's outside
// end goes.
func restoreLink(s linkStep, host int) error {
	l := s.link
	attrs := netlink.NewLinkAttrs()
	attrs.Name, attrs.Index, attrs.MTU = l.GetName(), int(l.GetIfindex()), int(l.GetMtu())
	attrs.HardwareAddr = net.HardwareAddr(l.GetAddress())
	if l.GetFlags()&unix.IFF_UP != 0 {
		attrs.Flags = net.FlagUp
	}
	switch {
	case l.GetType() == netdev.NdType_BRIDGE:
		if err := netlink.LinkAdd(&netlink.Bridge{LinkAttrs: attrs}); err != nil {
			return fmt.Errorf("create bridge %s (index %d): %w", l.GetName(), l.GetIfindex(), err)
		}
		return nil
	case s.peer == nil:
		return setLoopback(l)
	}
	v := &netlink.Veth{LinkAttrs: attrs, PeerName: s.peer.Name, PeerNamespace: netlink.NsFd(host)}
	if err := netlink.LinkAdd(v); err != nil {
		if errors.Is(err, unix.EEXIST) {
			err = fmt.Errorf("%w (is %s taken in amber's network namespace?)", err, s.peer.Name)
		}
		return fmt.Errorf("create veth %s (index %d) with peer %s: %w", l.GetName(), l.GetIfindex(), s.peer.Name, err)
	}
	return nil
}

// attachPeer puts the outside end of a veth in its bridge, if it has
// one, and brings it up there, as CRIU's does; in amber's namespace.
func attachPeer(ext ExtVeth) error {
	if ext.Bridge == "" {
		return nil
	}
	peer, err := netlink.LinkByName(ext.Name)
	if err != nil {
		return fmt.Errorf("veth %s: %w", ext.Name, err)
	}
	br, err := netlink.LinkByName(ext.Bridge)
	if err != nil {
		return fmt.Errorf("bridge %s of veth %s: %w", ext.Bridge, ext.Name, err)
	}
	if err := netlink.LinkSetMaster(peer, br); err != nil {
		return fmt.Errorf("put veth %s in bridge %s: %w", ext.Name, ext.Bridge, err)
	}
	if err := netlink.LinkSetUp(peer); err != nil {
		return fmt.Errorf("bring veth %s up: %w", ext.Name, err)
	}
	return nil
}
