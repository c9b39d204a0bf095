package namespaces

// Network namespaces, in the one case amber restores: a namespace whose
// only link is the loopback (netdev-ID.img: its flags and MTU; an empty
// netns-ID.img beside it, as CRIU writes one per namespace). With
// --empty-ns net (runc's empty_ns) nothing is dumped and the restored
// tree gets a new namespace as it comes, for the container engine to
// set up: CRIU's behaviour too.

import (
	"errors"
	"fmt"
	"io/fs"
	"net"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/netdev"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/image"
)

// dumpNet writes netdev-ID.img and netns-ID.img of pid's network
// namespace, which must have no link but the loopback.
func dumpNet(dir image.Dir, id uint32, pid int) error {
	var links []*netdev.NetDeviceEntry
	err := inNamespace(pid, Net, func() error {
		var err error
		links, err = readLinks()
		return err
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
	return image.WriteFile(dir.NetnsPath(id), image.Netns, &netdev.NetnsEntry{})
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

// readLinks lists the links of the calling thread's network namespace;
// any but the loopback is refused.
func readLinks() ([]*netdev.NetDeviceEntry, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	var out []*netdev.NetDeviceEntry
	for _, i := range ifs {
		if i.Flags&net.FlagLoopback == 0 {
			return nil, fmt.Errorf("link %s (index %d): amber restores a network namespace with a loopback only "+
				"(a container engine sets up its network itself: dump with --empty-ns net)", i.Name, i.Index)
		}
		flags, err := linkFlags(i.Name)
		if err != nil {
			return nil, err
		}
		out = append(out, &netdev.NetDeviceEntry{
			Type: netdev.NdType_LOOPBACK.Enum(), Ifindex: proto.Uint32(uint32(i.Index)),
			Mtu: proto.Uint32(uint32(i.MTU)), Flags: proto.Uint32(flags), Name: proto.String(i.Name),
		})
	}
	return out, nil
}

// RestoreNet sets up the network namespace id that pid was created in:
// nothing with empty (--empty-ns net), else the loopback of
// netdev-ID.img, up if it was.
func RestoreNet(dir image.Dir, id uint32, pid int, empty bool) error {
	if empty {
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
	for _, l := range links {
		if l.GetType() != netdev.NdType_LOOPBACK {
			return fmt.Errorf("%s: link %s of type %s: amber restores a loopback only", p, l.GetName(), l.GetType())
		}
	}
	return inNamespace(pid, Net, func() error {
		for _, l := range links {
			if err := setLoopback(l); err != nil {
				return fmt.Errorf("%s: link %s: %w", p, l.GetName(), err)
			}
		}
		return nil
	})
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

// linkFlags reads a link's flags (IFF_*).
func linkFlags(name string) (uint32, error) {
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return 0, err
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return 0, fmt.Errorf("link %s: flags: %w", name, err)
	}
	return uint32(ifr.Uint16()), nil
}
