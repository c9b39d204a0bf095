package sockets

import (
	"errors"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

// inoOfSock is the inode of socket s.
func inoOfSock(t *testing.T, s int) uint32 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Fstat(s, &st); err != nil {
		t.Fatal(err)
	}
	return uint32(st.Ino)
}

// TestDumpPacket reads real packet sockets through sock_diag: a
// receiver on lo with a membership added twice and a fanout group made
// with a unique id and rollover, and a socket with a TPACKET_V3 ring; the entries
// keep the protocol in network order, the membership twice, the group's
// id, type and rollover flag without the unique-id flag, and the ring's
// setup.
func TestDumpPacket(t *testing.T) {
	rx, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM, int(swap16(0x88b5)))
	if errors.Is(err, unix.EPERM) {
		t.Skip("no CAP_NET_RAW: packet sockets cannot be made")
	}
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(rx)
	if err := unix.Bind(rx, &unix.SockaddrLinklayer{Protocol: swap16(0x88b5), Ifindex: 1}); err != nil {
		t.Fatal(err)
	}
	mr := &unix.PacketMreq{Ifindex: 1, Type: unix.PACKET_MR_PROMISC}
	for range 2 {
		if err := unix.SetsockoptPacketMreq(rx, unix.SOL_PACKET, unix.PACKET_ADD_MEMBERSHIP, mr); err != nil {
			t.Fatal(err)
		}
	}
	if err := unix.SetsockoptInt(rx, unix.SOL_PACKET, unix.PACKET_FANOUT,
		(unix.PACKET_FANOUT_LB|unix.PACKET_FANOUT_FLAG_UNIQUEID|unix.PACKET_FANOUT_FLAG_ROLLOVER)<<16); err != nil {
		t.Fatal(err)
	}
	fanout, err := unix.GetsockoptInt(rx, unix.SOL_PACKET, unix.PACKET_FANOUT)
	if err != nil || fanout&(unix.PACKET_FANOUT_FLAG_ROLLOVER<<16) == 0 {
		t.Fatalf("PACKET_FANOUT %#x (%v), want the rollover flag", fanout, err)
	}
	ring, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(ring)
	if err := unix.SetsockoptInt(ring, unix.SOL_PACKET, unix.PACKET_VERSION, unix.TPACKET_V3); err != nil {
		t.Fatal(err)
	}
	req := &unix.TpacketReq3{Block_size: 4096, Block_nr: 2, Frame_size: 2048, Frame_nr: 4, Retire_blk_tov: 60}
	if err := unix.SetsockoptTpacketReq3(ring, unix.SOL_PACKET, unix.PACKET_RX_RING, req); err != nil {
		t.Fatal(err)
	}

	all, err := listPacketSockets(nil)
	if err != nil {
		t.Fatal(err)
	}
	pd := all[inoOfSock(t, rx)]
	if pd == nil {
		t.Fatalf("sock_diag does not list the receiver")
	}
	pe, err := packetEntry(rx, pd, unix.O_RDWR)
	if err != nil {
		t.Fatal(err)
	}
	if pe.GetProtocol() != uint32(swap16(0x88b5)) || pe.GetIfindex() != 1 || len(pe.GetMclist()) != 2 ||
		pe.Fanout == nil || pe.GetFanout() != uint32(fanout)&^fanoutUniqueID {
		t.Errorf("receiver: %v, want protocol %#x on 1, the membership twice, fanout %#x without the unique-id flag", pe,
			swap16(0x88b5), fanout)
	}
	pd = all[inoOfSock(t, ring)]
	if pd == nil {
		t.Fatalf("sock_diag does not list the ring socket")
	}
	pe, err = packetEntry(ring, pd, unix.O_RDWR)
	if err != nil {
		t.Fatal(err)
	}
	r := pe.GetRxRing()
	if pe.GetVersion() != unix.TPACKET_V3 || r.GetBlockSize() != 4096 || r.GetBlockNr() != 2 || r.GetFrameSize() != 2048 ||
		r.GetRetireTmo() != 60 || pe.TxRing != nil {
		t.Errorf("ring socket: %v, want version 3, a receive ring of 2 blocks of 4096, retire 60 ms", pe)
	}
}

// TestDumpNetlink reads a real netlink socket through sock_diag: its
// port id and its groups, one above 32 among them.
func TestDumpNetlink(t *testing.T) {
	s, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(s)
	if err := unix.Bind(s, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: unix.RTMGRP_LINK}); err != nil {
		t.Fatal(err)
	}
	if err := unix.SetsockoptInt(s, unix.SOL_NETLINK, unix.NETLINK_ADD_MEMBERSHIP, 33); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(s)
	if err != nil {
		t.Fatal(err)
	}
	all, err := listNetlinkSockets(nil)
	if err != nil {
		t.Fatal(err)
	}
	nd := all[inoOfSock(t, s)]
	if nd == nil {
		t.Fatalf("sock_diag does not list the socket")
	}
	if nd.protocol != unix.NETLINK_ROUTE || nd.portid != sa.(*unix.SockaddrNetlink).Pid || !slices.Equal(nd.groups, []uint32{1, 1}) {
		t.Errorf("netlink socket: %+v, want NETLINK_ROUTE, port %d, groups [1 1]", nd, sa.(*unix.SockaddrNetlink).Pid)
	}
}
