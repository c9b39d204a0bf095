package namespaces

// Network namespaces, as CRIU's net.c saves them: the links
// (netdev-ID.img, netlinks.go), the addresses and routes
// (ifaddr-ID.img, route-ID.img, route6-ID.img in iproute2's format,
// iproute.go), the firewall rules (iptables-ID.img, ip6tables-ID.img,
// nftables-ID.img, package netfilter) and netns-ID.img. With --empty-ns
// net (runc's empty_ns) nothing is dumped and the restored tree gets a new namespace as it
// comes, for the container engine to set up: CRIU's behaviour too.

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/netdev"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/image"
	"amber/internal/netfilter"
)

// dumpNet writes the images of pid's network namespace, id in the
// dump: its links, addresses and routes, and its sysctls (netconf.go).
func dumpNet(dir image.Dir, id uint32, pid int) error {
	var links []*netdev.NetDeviceEntry
	var conf *netdev.NetnsEntry
	err := InNamespace(pid, Net, func() error {
		var err error
		if links, err = readLinks(id); err != nil {
			return err
		}
		for _, l := range links {
			if err := readLinkConf(l); err != nil {
				return fmt.Errorf("link %s: %w", l.GetName(), err)
			}
		}
		if conf, err = readNetnsConf(); err != nil {
			return err
		}
		for _, d := range []struct {
			p image.Path
			d rtDump
		}{{dir.IfaddrPath(id), addrDump}, {dir.RoutePath(id), routeDump}, {dir.Route6Path(id), route6Dump}} {
			if err := dumpRt(d.p, d.d); err != nil {
				return err
			}
		}
		return netfilter.DumpRules(dir, id)
	})
	if err != nil {
		return fmt.Errorf("network namespace of pid %d: %w", pid, err)
	}
	msgs := make([]proto.Message, len(links))
	for i, l := range links {
		msgs[i] = l
	}
	if err := image.WriteFile(dir.NetdevPath(id), image.Netdev, msgs...); err != nil {
		return err
	}
	return image.WriteFile(dir.NetnsPath(id), image.Netns, conf)
}

// dumpExtNet writes the netns-ID.img of an external network namespace:
// its key alone, as CRIU writes it.
func dumpExtNet(dir image.Dir, id uint32, key string) error {
	return image.WriteFile(dir.NetnsPath(id), image.Netns, &netdev.NetnsEntry{ExtKey: proto.String(key)})
}

// ExtNetKey is the key of network namespace id if the dump left it
// external (--external net[INO]:KEY), "" if not.
func ExtNetKey(dir image.Dir, id uint32) (string, error) {
	all, err := image.ReadFile(dir.NetnsPath(id), image.Netns, func() *netdev.NetnsEntry { return &netdev.NetnsEntry{} })
	if errors.Is(err, fs.ErrNotExist) || (err == nil && len(all) == 0) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return all[0].GetExtKey(), nil
}

// NetOptions say how RestoreNet sets up a network namespace.
type NetOptions struct {
	// Empty leaves it as it comes (--empty-ns net).
	Empty bool
	// Veths are the outside ends of its veths, by the veth's name
	// (--external veth[IFNAME]:OUTNAME[@BRIDGE]).
	Veths map[string]ExtVeth
	// Several says the tree has other network namespaces, whose veths
	// Veths may name too.
	Several bool
}

// RestoreNet sets up the network namespace id that pid was created in,
// as its images say: its sysctls, its links (the loopback up if it was,
// its veths with their outside ends) with theirs, then their addresses,
// then the routes.
func RestoreNet(dir image.Dir, id uint32, pid int, opts NetOptions) error {
	if opts.Empty {
		return nil
	}
	p := dir.NetdevPath(id)
	links, err := image.ReadFile(p, image.Netdev, func() *netdev.NetDeviceEntry { return &netdev.NetDeviceEntry{} })
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s: missing: the dump left the network namespace to the container engine (restore with --empty-ns net)", p)
	}
	if err != nil {
		return err
	}
	steps, err := planLinks(p.String(), id, links, opts.Veths, !opts.Several)
	if err != nil {
		return err
	}
	host, err := os.Open("/proc/thread-self/ns/net") // amber's namespace, or a test's stand-in
	if err != nil {
		return err
	}
	defer host.Close()
	conf, err := readNetns(dir, id)
	if err != nil {
		return err
	}
	err = InNamespace(pid, Net, func() error {
		if err := writeNetnsConf(conf); err != nil {
			return fmt.Errorf("%s: %w", dir.NetnsPath(id), err)
		}
		for _, s := range steps {
			if err := restoreLink(s, int(host.Fd())); err != nil {
				return fmt.Errorf("%s: link %s: %w", p, s.link.GetName(), err)
			}
			if err := writeLinkConf(s.link); err != nil {
				return fmt.Errorf("%s: link %s: %w", p, s.link.GetName(), err)
			}
		}
		if err := restoreAddrsRoutes(dir, id); err != nil {
			return err
		}
		return netfilter.RestoreRules(dir, id)
	})
	if err != nil {
		return err
	}
	for _, s := range steps {
		if s.peer != nil {
			if err := attachPeer(*s.peer); err != nil {
				return err
			}
		}
	}
	return nil
}

// readNetns reads netns-ID.img, empty if it has no entry.
func readNetns(dir image.Dir, id uint32) (*netdev.NetnsEntry, error) {
	all, err := image.ReadFile(dir.NetnsPath(id), image.Netns, func() *netdev.NetnsEntry { return &netdev.NetnsEntry{} })
	if err != nil || len(all) == 0 {
		return &netdev.NetnsEntry{}, err
	}
	return all[0], nil
}

// restoreAddrsRoutes restores the addresses and routes of network
// namespace id into the calling thread's; an image CRIU did not write
// (no IPv6) is skipped.
func restoreAddrsRoutes(dir image.Dir, id uint32) error {
	for _, d := range []struct {
		p image.Path
		d rtDump
	}{{dir.IfaddrPath(id), addrDump}, {dir.RoutePath(id), routeDump}, {dir.Route6Path(id), route6Dump}} {
		err := restoreRt(d.p, d.d)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// readAll reads image p whole.
func readAll(p image.Path) ([]byte, error) {
	f, err := p.OpenContents()
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return b, nil
}

// setLoopback gives the new namespace's loopback the dumped MTU and
// flags (up, and so 127.0.0.1 and ::1).
func setLoopback(l *netdev.NetDeviceEntry) error {
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr.SetUint32(l.GetMtu())
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFMTU, ifr); err != nil {
		return fmt.Errorf("set mtu %d: %w", l.GetMtu(), err)
	}
	ifr.SetUint16(uint16(l.GetFlags()))
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("set flags %#x: %w", l.GetFlags(), err)
	}
	return nil
}
