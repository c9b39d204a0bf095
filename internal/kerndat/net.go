package kerndat

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// ipv6Freebind is IPV6_FREEBIND of linux/in6.h (Linux 4.15), which x/sys
// lacks.
const ipv6Freebind = 78

// probeNet probes what dumping and restoring inet sockets uses, on fresh
// sockets: TCP repair mode (which needs CAP_NET_ADMIN), SO_BUF_LOCK,
// IPV6_FREEBIND and SIOCGSKNS (a socket's network namespace).
func probeNet() (repair, bufLock, v6Freebind, skNs Status) {
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		m := missing("no TCP socket: %w", err)
		return m, m, m, m
	}
	defer unix.Close(s)
	repair = probeTCPRepair(s)
	bufLock = probeSockopt(s, unix.SOL_SOCKET, unix.SO_BUF_LOCK, "SO_BUF_LOCK")
	if ns, err := unix.IoctlRetInt(s, unix.SIOCGSKNS); err != nil {
		skNs = missing("SIOCGSKNS: %w", err)
	} else {
		unix.Close(ns)
		skNs = present()
	}
	s6, err := unix.Socket(unix.AF_INET6, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return repair, bufLock, missing("no IPv6 socket: %w", err), skNs
	}
	defer unix.Close(s6)
	return repair, bufLock, probeSockopt(s6, unix.IPPROTO_IPV6, ipv6Freebind, "IPV6_FREEBIND"), skNs
}

// probeTCPRepair turns repair mode on and off on an unconnected socket.
func probeTCPRepair(s int) Status {
	if err := unix.SetsockoptInt(s, unix.IPPROTO_TCP, unix.TCP_REPAIR, unix.TCP_REPAIR_ON); err != nil {
		return missing("TCP_REPAIR (needs CAP_NET_ADMIN): %w", err)
	}
	if err := unix.SetsockoptInt(s, unix.IPPROTO_TCP, unix.TCP_REPAIR, unix.TCP_REPAIR_OFF); err != nil {
		return missing("TCP_REPAIR off: %w", err)
	}
	return present()
}

// probeSockopt reads an int option the kernel may not know.
func probeSockopt(s, level, opt int, name string) Status {
	if _, err := unix.GetsockoptInt(s, level, opt); err != nil {
		return Status{Err: fmt.Errorf("getsockopt %s: %w", name, err)}
	}
	return present()
}
