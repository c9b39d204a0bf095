package files

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"golang.org/x/sys/unix"

	"amber/internal/plan"
)

// This file models packet and netlink sockets for fdSim, with the rules
// of the kernel a plan must follow: a packet socket's version, reserve,
// vnet header and loss cannot change once it has a ring (EBUSY), and it
// joins a fanout group only once bound to a protocol (EINVAL); a
// SOCK_PACKET socket binds to an interface by name (a struct sockaddr of
// 16 bytes), which SIOCGIFNAME tells of an index ("lo" is 1 here). A
// netlink socket binds once to a port id and the first 32 groups, joins
// others with NETLINK_ADD_MEMBERSHIP, and connects to a port id and one
// group.

// simLink is a packet or netlink socket.
type simLink struct {
	family, typ, proto int
	ifindex            uint32 // packet: the interface bound to
	ifname             string // SOCK_PACKET: the name bound to
	opts               map[int]uint32
	mreqs              int  // packet: memberships added
	ring               bool // packet: a ring is set up
	portid             uint32
	groups             []uint32 // netlink: the groups joined, in order
	bound              bool
	dstPortid          uint32 // netlink: connected to
	dstGroups          uint32
	connected          bool
}

// linkCall carries out c if it concerns a packet or netlink socket, and
// reports whether it did.
func (s *fdSim) linkCall(c plan.Call) (bool, error) {
	a := c.Args
	if c.Nr == unix.SYS_SOCKET {
		if a[0] != unix.AF_PACKET && a[0] != unix.AF_NETLINK {
			return false, nil
		}
		k := &simLink{family: int(a[0]), typ: int(a[1]), proto: int(a[2]), opts: map[int]uint32{}}
		s.install(s.lowest(0), &simFile{kind: "link", link: k}, false)
		return true, nil
	}
	switch c.Nr {
	case unix.SYS_BIND, unix.SYS_CONNECT, unix.SYS_SETSOCKOPT, unix.SYS_IOCTL:
	default:
		return false, nil
	}
	d, ok := s.fds[int(a[0])]
	if !ok || d.f.link == nil {
		return false, nil
	}
	k := d.f.link
	switch {
	case c.Nr == unix.SYS_IOCTL && a[1] == unix.SIOCGIFNAME:
		ifr, err := s.mem(a[2], 40)
		if err != nil {
			return true, err
		}
		if binary.LittleEndian.Uint32(ifr[unix.IFNAMSIZ:]) != 1 {
			return true, unix.ENODEV
		}
		copy(ifr, "lo\x00")
		return true, nil
	case c.Nr == unix.SYS_IOCTL:
		return true, fmt.Errorf("ioctl %#x not modelled", a[1])
	case k.family == unix.AF_PACKET:
		return true, s.packetCall(k, c.Nr, a)
	}
	return true, s.netlinkCall(k, c.Nr, a)
}

func (s *fdSim) packetCall(k *simLink, nr uintptr, a [6]uint64) error {
	switch nr {
	case unix.SYS_BIND:
		if k.typ == unix.SOCK_PACKET {
			sa, err := s.mem(a[1], a[2])
			if err != nil || a[2] != 16 {
				return fmt.Errorf("SOCK_PACKET bind of %d bytes (%v): %w", a[2], err, unix.EINVAL)
			}
			name, _, _ := bytes.Cut(sa[2:], []byte{0})
			k.ifname = string(name)
			return nil
		}
		sa, err := s.mem(a[1], a[2])
		if err != nil || a[2] < 20 || binary.LittleEndian.Uint16(sa) != unix.AF_PACKET {
			return fmt.Errorf("bind with %d bytes (%v): %w", a[2], err, unix.EINVAL)
		}
		k.ifindex, k.bound = binary.LittleEndian.Uint32(sa[4:]), true
		return nil
	case unix.SYS_SETSOCKOPT:
		if a[1] != unix.SOL_PACKET {
			return nil // socket-level options: not checked here
		}
		v, err := s.mem(a[3], a[4])
		if err != nil || len(v) < 4 {
			return fmt.Errorf("option %d of %d bytes: %w", a[2], a[4], unix.EINVAL)
		}
		switch opt := int(a[2]); opt {
		case unix.PACKET_VERSION, unix.PACKET_RESERVE, unix.PACKET_VNET_HDR, unix.PACKET_LOSS:
			if k.ring {
				return fmt.Errorf("option %d with a ring: %w", opt, unix.EBUSY)
			}
		case unix.PACKET_FANOUT:
			if !k.bound || k.proto == 0 {
				return fmt.Errorf("fanout before a bind to a protocol: %w", unix.EINVAL)
			}
		case unix.PACKET_RX_RING, unix.PACKET_TX_RING:
			if a[4] < 28 {
				return fmt.Errorf("ring request of %d bytes: %w", a[4], unix.EINVAL)
			}
			k.ring = true
		case unix.PACKET_ADD_MEMBERSHIP:
			k.mreqs++
			return nil
		}
		k.opts[int(a[2])] = binary.LittleEndian.Uint32(v)
		return nil
	}
	return fmt.Errorf("call %d on a packet socket not modelled", nr)
}

func (s *fdSim) netlinkCall(k *simLink, nr uintptr, a [6]uint64) error {
	switch nr {
	case unix.SYS_BIND, unix.SYS_CONNECT:
		sa, err := s.mem(a[1], a[2])
		if err != nil || a[2] != 12 || binary.LittleEndian.Uint16(sa) != unix.AF_NETLINK {
			return fmt.Errorf("address of %d bytes (%v): %w", a[2], err, unix.EINVAL)
		}
		pid, groups := binary.LittleEndian.Uint32(sa[4:]), binary.LittleEndian.Uint32(sa[8:])
		if nr == unix.SYS_CONNECT {
			if !k.bound {
				k.bound, k.portid = true, 0xfffff000 // autobound
			}
			k.dstPortid, k.dstGroups, k.connected = pid, groups, true
			return nil
		}
		if k.bound {
			return fmt.Errorf("bound twice: %w", unix.EINVAL)
		}
		k.bound, k.portid = true, pid
		for g := range 32 {
			if groups&(1<<g) != 0 {
				k.groups = append(k.groups, uint32(g+1))
			}
		}
		return nil
	case unix.SYS_SETSOCKOPT:
		if a[1] != unix.SOL_NETLINK {
			return nil
		}
		v, err := s.mem(a[3], 4)
		if err != nil || a[2] != unix.NETLINK_ADD_MEMBERSHIP {
			return fmt.Errorf("netlink option %d not modelled (%v)", a[2], err)
		}
		k.groups = append(k.groups, binary.LittleEndian.Uint32(v))
		return nil
	}
	return fmt.Errorf("call %d on a netlink socket not modelled", nr)
}
