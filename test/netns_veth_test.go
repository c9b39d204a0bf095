package test

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
)

// The bridge that stands for a container engine's: the outside ends of
// netns_veth's veth are put in it, and it holds the addresses the
// program reaches.
const (
	vethBridge = "amber-vbr"
	vethHostIP = "10.213.78.1"
)

// TestNamespacesNetVeth dumps netns_veth, in a network namespace of its
// own whose eth0 is a veth with its peer in the test's namespace, and
// restores it: without --external veth[eth0]:... the restore is refused
// naming the link and the option and leaves nothing running; with it,
// eth0 comes back with its index, MTU, MAC, address and route, its new
// outside end is in the test's bridge and up, and the program talks to
// the test through it both ways, its sysctls restored. crit shows the
// link images, and iproute2 reads the address and route images as
// CRIU's restore would.
func TestNamespacesNetVeth(t *testing.T) {
	requireAmber(t)
	if _, err := exec.LookPath("ip"); err != nil {
		missing(t, "netns_veth sets up its links with ip: apt-get install iproute2")
	}
	bridge(t)
	p, _ := lookupProgram("netns_veth")
	c := startProgram(t, p)
	c.mustDump()
	id := c.netnsID()
	checkNetImages(t, c.images, id)

	r := c.restoreDetached(c.pidfile())
	if r.err == nil || !strings.Contains(r.stderr, "veth eth0") || !strings.Contains(r.stderr, "--external veth[eth0]:OUTNAME") {
		t.Fatalf("restore without --external veth: %v; want a failure naming eth0 and the option", r)
	}
	if alive(c.pid) {
		t.Fatalf("pid %d runs after a failed restore", c.pid)
	}

	out := fmt.Sprintf("amw%d", c.pid)
	t.Cleanup(func() { deleteLink(t, out) })
	served := serveVethPeer(t)
	pidfile := c.pidfile()
	if r := c.amber(c.prog, c.restoreArgs(pidfile, "-d", "--external", "veth[eth0]:"+out+"@"+vethBridge)...); r.err != nil {
		t.Fatalf("restore failed: %v", r)
	}
	c.checkRestoredPid(pidfile)
	checkOutsideEnd(t, out)
	c.mustPass()
	select {
	case err := <-served:
		if err != nil {
			t.Error(err)
		}
	case <-time.After(exitTimeout):
		t.Error("the program passed but the test's server did not finish")
	}
}

// bridge makes vethBridge, up, with 10.213.77.1/24 (the program's
// gateway) and vethHostIP/24; the test's cleanup deletes it.
func bridge(t *testing.T) {
	t.Helper()
	deleteLink(t, vethBridge) // a run killed before its cleanup
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: vethBridge, TxQLen: -1}}
	if err := netlink.LinkAdd(br); err != nil {
		t.Fatalf("add bridge %s: %v", vethBridge, err)
	}
	t.Cleanup(func() { deleteLink(t, vethBridge) })
	for _, a := range []string{"10.213.77.1/24", vethHostIP + "/24"} {
		addr, err := netlink.ParseAddr(a)
		if err == nil {
			err = netlink.AddrAdd(br, addr)
		}
		if err != nil {
			t.Fatalf("bridge %s: address %s: %v", vethBridge, a, err)
		}
	}
	if err := netlink.LinkSetUp(br); err != nil {
		t.Fatal(err)
	}
}

func deleteLink(t *testing.T, name string) {
	if l, err := netlink.LinkByName(name); err == nil {
		if err := netlink.LinkDel(l); err != nil {
			t.Logf("delete %s: %v", name, err)
		}
	}
}

// checkNetImages has crit show the link images of network namespace id,
// and iproute2 read its address and route images.
func checkNetImages(t *testing.T, images string, id uint32) {
	t.Helper()
	crit := critCommand(t)
	for img, want := range map[string]string{"netdev": `"VETH"`, "netns": "{"} {
		path := filepath.Join(images, fmt.Sprintf("%s-%d.img", img, id))
		args := append(crit[1:len(crit):len(crit)], "show", path)
		out, err := exec.Command(crit[0], args...).CombinedOutput()
		if err != nil || !strings.Contains(string(out), want) {
			t.Errorf("crit show %s: %v\n%s\nwant %s in it", path, err, out, want)
		}
	}
	for _, c := range []struct{ img, obj, want string }{
		{"ifaddr", "addr", "inet 10.213.77.2/24"},
		{"route", "route", "10.213.78.0/24 via 10.213.77.1 dev if7"}, // eth0, index 7, is not here
	} {
		f, err := os.Open(filepath.Join(images, fmt.Sprintf("%s-%d.img", c.img, id)))
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("ip", c.obj, "showdump")
		cmd.Stdin = f
		out, err := cmd.CombinedOutput()
		f.Close()
		if err != nil || !strings.Contains(string(out), c.want) {
			t.Errorf("ip %s showdump < %s-%d.img: %v\n%s\nwant %q in it", c.obj, c.img, id, err, out, c.want)
		}
	}
}

// checkOutsideEnd checks the veth's new outside end is in the bridge and
// up.
func checkOutsideEnd(t *testing.T, name string) {
	t.Helper()
	l, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatalf("outside end %s after restore: %v", name, err)
	}
	br, err := netlink.LinkByName(vethBridge)
	if err != nil {
		t.Fatal(err)
	}
	if l.Type() != "veth" || l.Attrs().MasterIndex != br.Attrs().Index || l.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("outside end %s: %s, master %d, flags %v; want a veth in %s (%d), up", name, l.Type(), l.Attrs().MasterIndex, l.Attrs().Flags, vethBridge, br.Attrs().Index)
	}
}

// serveVethPeer listens on vethHostIP:7778 for the restored program:
// on its "ping" it connects to the program's listener, sends "hello",
// then answers "pong". The channel gets the outcome.
func serveVethPeer(t *testing.T) <-chan error {
	t.Helper()
	l, err := net.Listen("tcp", vethHostIP+":7778")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	done := make(chan error, 1)
	go func() { done <- answerPing(l) }()
	return done
}

func answerPing(l net.Listener) error {
	c, err := l.Accept()
	if err != nil {
		return fmt.Errorf("accept the program's connection: %w", err)
	}
	defer c.Close()
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		return fmt.Errorf("read ping: %q, %v", buf, err)
	}
	back, err := net.Dial("tcp", "10.213.77.2:7777")
	if err != nil {
		return fmt.Errorf("connect to the program's listener: %w", err)
	}
	_, err = back.Write([]byte("hello"))
	back.Close()
	if err != nil {
		return fmt.Errorf("hello: %w", err)
	}
	_, err = c.Write([]byte("pong"))
	return err
}
