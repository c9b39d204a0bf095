// Package sockets dumps and restores the sockets of a task's descriptor
// table, as CRIU's sk-*.c do: unix sockets (UnixSkEntry in files.img)
// with the messages queued on them and the descriptors in flight in
// those (sk-queues.img), external unix sockets (--ext-unix-sk) and
// unix sockets whose file was deleted; TCP, UDP, raw and ping sockets
// over IPv4 and IPv6 (InetSkEntry), with their socket, IP and TCP options, and
// established TCP connections in repair mode (tcp-stream-INO.img), let
// go or shut down once every task is restored (EndTCPRepair, CloseTCP);
// packet sockets (PacketSockEntry) and netlink sockets (NetlinkSkEntry).
//
// One file per kind of socket, its dump and its restore side by side.
// Package files owns the descriptor table: it hands each socket it
// meets to a Dumper at dump and to a Plan at restore, and gives them
// what they need of the table through two small interfaces, Files and
// Planner (fdtable.go): a message may carry a descriptor of any kind of
// file, which files dumps and makes.
package sockets
