package namespaces

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"amber/internal/image"
)

// heldNetns keeps a thread in a new network namespace until stop is
// called, and gives its TID; the thread ends with it.
func heldNetns(t *testing.T) (tid int, stop func()) {
	t.Helper()
	tids, done := make(chan int), make(chan struct{})
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			t.Errorf("unshare: %v", err)
			close(tids)
			return
		}
		tids <- unix.Gettid()
		<-done
	}()
	tid, ok := <-tids
	if !ok {
		t.FailNow()
	}
	return tid, func() { close(done) }
}

var (
	testMAC = net.HardwareAddr{0x02, 0xa5, 0x00, 0x00, 0x00, 0x07}
	testGw  = net.IPv4(10, 77, 0, 1)
)

// testSysctls are settings of makeVethNetns's namespace that differ
// from a new namespace's: of amber-v0, of "all" and "default", and
// others.
var testSysctls = map[string]string{
	"ipv4/conf/amber-v0/rp_filter": "2", "ipv6/conf/amber-v0/hop_limit": "33",
	"ipv4/conf/all/forwarding": "1", "ipv6/conf/default/hop_limit": "44",
	"unix/max_dgram_qlen": "123", "ipv4/ping_group_range": "5\t6",
}

// makeVethNetns brings the loopback of tid's namespace up and gives it a
// veth amber-v0 (index 7,
// MTU 1400, testMAC, up, 10.77.0.2/24, a route to 10.88.0.0/16 through
// testGw) whose peer amber-p0 is in the calling thread's namespace.
func makeVethNetns(t *testing.T, tid int) {
	t.Helper()
	host, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	err = InNamespace(tid, Net, func() error {
		if err := netlink.LinkSetUp(&netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: 1}}); err != nil {
			return err
		}
		a := netlink.NewLinkAttrs()
		a.Name, a.Index, a.MTU, a.HardwareAddr, a.Flags = "amber-v0", 7, 1400, testMAC, net.FlagUp
		v := &netlink.Veth{LinkAttrs: a, PeerName: "amber-p0", PeerNamespace: netlink.NsFd(host.Fd())}
		if err := netlink.LinkAdd(v); err != nil {
			return err
		}
		addr, _ := netlink.ParseAddr("10.77.0.2/24")
		if err := netlink.AddrAdd(v, addr); err != nil {
			return err
		}
		for path, v := range testSysctls {
			if err := os.WriteFile("/proc/sys/net/"+path, []byte(v), 0); err != nil {
				return err
			}
		}
		_, dst, _ := net.ParseCIDR("10.88.0.0/16")
		return netlink.RouteAdd(&netlink.Route{LinkIndex: 7, Dst: dst, Gw: testGw, Flags: int(netlink.FLAG_ONLINK)})
	})
	if err != nil {
		t.Fatalf("set up veth: %v", err)
	}
}

// TestNetVethRoundTrip dumps a namespace with a veth whose peer is
// outside, deletes the pair, and restores the namespace into a new one
// with --external veth[amber-v0]:amber-p1: the veth is back with its
// index, MTU, MAC, state, address, route and sysctls, and its peer amber-p1 is
// in the restoring thread's namespace. Everything runs in namespaces of
// the test's own.
func TestNetVethRoundTrip(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root")
	}
	dir, err := image.OpenDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	inFreshNetns(t, func(int) error { // stands for amber's namespace
		tree, stop := heldNetns(t)
		makeVethNetns(t, tree)
		if err := dumpNet(dir, 9, tree); err != nil {
			stop()
			return err
		}
		err := InNamespace(tree, Net, func() error { return netlink.LinkDel(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "amber-v0"}}) })
		stop()
		if err != nil {
			return err
		}
		checkShowdump(t, dir)
		tree, stop = heldNetns(t)
		defer stop()
		err = RestoreNet(dir, 9, tree, NetOptions{Veths: map[string]ExtVeth{"amber-v0": {Name: "amber-p1"}}})
		if err != nil {
			return err
		}
		if _, err := netlink.LinkByName("amber-p1"); err != nil {
			t.Errorf("outside end amber-p1: %v", err)
		}
		return InNamespace(tree, Net, func() error { checkVeth(t); return nil })
	})
}

// checkVeth checks the calling thread's namespace has makeVethNetns's
// veth and settings.
func checkVeth(t *testing.T) {
	l, err := netlink.LinkByName("amber-v0")
	if err != nil {
		t.Errorf("veth after restore: %v", err)
		return
	}
	a := l.Attrs()
	if l.Type() != "veth" || a.Index != 7 || a.MTU != 1400 || !bytes.Equal(a.HardwareAddr, testMAC) || a.RawFlags&unix.IFF_UP == 0 {
		t.Errorf("veth after restore: %s index %d mtu %d mac %s flags %#x; want veth 7 1400 %s up", l.Type(), a.Index, a.MTU, a.HardwareAddr, a.RawFlags, testMAC)
	}
	addrs, err := netlink.AddrList(l, netlink.FAMILY_V4)
	if err != nil || len(addrs) != 1 || addrs[0].IPNet.String() != "10.77.0.2/24" {
		t.Errorf("addresses after restore: %v (%v); want 10.77.0.2/24", addrs, err)
	}
	routes, err := netlink.RouteList(l, netlink.FAMILY_V4)
	found := false
	for _, r := range routes {
		found = found || (r.Dst != nil && r.Dst.String() == "10.88.0.0/16" && r.Gw.Equal(testGw))
	}
	if err != nil || !found {
		t.Errorf("routes after restore: %v (%v); want 10.88.0.0/16 via %s", routes, err, testGw)
	}
	for path, v := range testSysctls {
		if b, err := os.ReadFile("/proc/sys/net/" + path); err != nil || strings.TrimSpace(string(b)) != v {
			t.Errorf("sysctl net/%s after restore: %q (%v), want %q", path, b, err, v)
		}
	}
	if lo, err := netlink.LinkByName("lo"); err != nil || lo.Attrs().RawFlags&unix.IFF_UP == 0 {
		t.Errorf("loopback after restore: %v, want it up", err)
	}
}

// checkShowdump checks that iproute2 reads the dumped images, as CRIU's
// restore would ("ip addr restore" reads what "ip addr showdump" does).
func checkShowdump(t *testing.T, dir image.Dir) {
	for _, c := range []struct {
		p    image.Path
		args []string
		want string
	}{
		{dir.IfaddrPath(9), []string{"addr", "showdump"}, "10.77.0.2/24"},
		{dir.RoutePath(9), []string{"route", "showdump"}, "10.88.0.0/16 via 10.77.0.1"},
	} {
		if _, err := exec.LookPath("ip"); err != nil {
			t.Log("no ip command: the images are not checked with iproute2")
			return
		}
		f, err := os.Open(c.p.String())
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("ip", c.args...)
		cmd.Stdin = f
		out, err := cmd.CombinedOutput()
		f.Close()
		if err != nil || !strings.Contains(string(out), c.want) {
			t.Errorf("ip %s < %s: %v\n%s\nwant %q in it", strings.Join(c.args, " "), c.p, err, out, c.want)
		}
	}
}

// TestNetBridgeRoundTrip dumps a namespace with a bridge (as zdtm's
// bridge test makes it: an IPv4 address and a link-local IPv6 one) and
// restores it into a new one: the bridge is back with its kind, index,
// MTU, MAC and state, and both addresses.
func TestNetBridgeRoundTrip(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root")
	}
	dir, err := image.OpenDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	mac := net.HardwareAddr{0x02, 0xa5, 0x00, 0x00, 0x00, 0x05}
	want := []string{"10.0.55.55/32", "fe80:4567::1/64"}
	inFreshNetns(t, func(int) error {
		tree, stop := heldNetns(t)
		err := InNamespace(tree, Net, func() error {
			a := netlink.NewLinkAttrs()
			a.Name, a.Index, a.MTU, a.HardwareAddr, a.Flags = "amber-br0", 5, 1300, mac, net.FlagUp
			br := &netlink.Bridge{LinkAttrs: a}
			if err := netlink.LinkAdd(br); err != nil {
				return err
			}
			for _, s := range want {
				addr, _ := netlink.ParseAddr(s)
				addr.Flags = unix.IFA_F_NODAD
				if err := netlink.AddrAdd(br, addr); err != nil {
					return err
				}
			}
			return nil
		})
		if err == nil {
			err = dumpNet(dir, 9, tree)
		}
		stop()
		if err != nil {
			return err
		}
		tree, stop = heldNetns(t)
		defer stop()
		if err := RestoreNet(dir, 9, tree, NetOptions{}); err != nil {
			return err
		}
		return InNamespace(tree, Net, func() error {
			l, err := netlink.LinkByName("amber-br0")
			if err != nil {
				return err
			}
			a := l.Attrs()
			if l.Type() != "bridge" || a.Index != 5 || a.MTU != 1300 || !bytes.Equal(a.HardwareAddr, mac) || a.RawFlags&unix.IFF_UP == 0 {
				t.Errorf("bridge after restore: %s index %d mtu %d mac %s flags %#x; want bridge 5 1300 %s up", l.Type(), a.Index, a.MTU, a.HardwareAddr, a.RawFlags, mac)
			}
			addrs, err := netlink.AddrList(l, netlink.FAMILY_ALL)
			if err != nil {
				return err
			}
			for _, w := range want {
				found := false
				for _, a := range addrs {
					found = found || a.IPNet.String() == w
				}
				if !found {
					t.Errorf("bridge addresses after restore: %v, want %s among them", addrs, w)
				}
			}
			return nil
		})
	})
}
