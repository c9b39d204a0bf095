package namespaces

import (
	"net"
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/netdev"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/image"
)

// inFreshNetns runs fn on a thread of its own in a new network
// namespace, with the thread's TID; the thread ends with it.
func inFreshNetns(t *testing.T, fn func(tid int) error) {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("needs root")
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			t.Errorf("unshare: %v", err)
			return
		}
		if err := fn(unix.Gettid()); err != nil {
			t.Error(err)
		}
	}()
	<-done
}

// TestNetLoopbackRoundTrip dumps a namespace whose loopback is up with
// an MTU of its own and restores it into a new one, where it comes
// down: the loopback is up again with that MTU.
func TestNetLoopbackRoundTrip(t *testing.T) {
	dir, err := image.OpenDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	inFreshNetns(t, func(tid int) error {
		up := &netdev.NetDeviceEntry{Mtu: proto.Uint32(1500), Flags: proto.Uint32(unix.IFF_UP)}
		if err := setLoopback(up); err != nil {
			return err
		}
		return dumpNet(dir, 9, tid)
	})
	inFreshNetns(t, func(tid int) error {
		if f, _ := linkFlags("lo"); f&unix.IFF_UP != 0 {
			t.Errorf("a new namespace's loopback is up")
		}
		if err := RestoreNet(dir, 9, tid, NetOptions{}); err != nil {
			return err
		}
		f, err := linkFlags("lo")
		if err != nil {
			return err
		}
		if f&unix.IFF_UP == 0 {
			t.Errorf("loopback flags %#x after restore, want it up", f)
		}
		if i, err := net.InterfaceByName("lo"); err != nil || i.MTU != 1500 {
			t.Errorf("loopback %+v (%v) after restore, want MTU 1500", i, err)
		}
		// With --empty-ns net, the namespace stays as it is.
		return RestoreNet(image.Dir{}, 9, tid, NetOptions{Empty: true})
	})
}

// TestNetRefusesOtherLinks: a namespace with a link amber does not
// restore (a dummy) is refused, naming it.
func TestNetRefusesOtherLinks(t *testing.T) {
	dir, err := image.OpenDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	inFreshNetns(t, func(tid int) error {
		d := &netlink.Dummy{LinkAttrs: netlink.NewLinkAttrs()}
		d.Name = "amber-d0"
		if err := netlink.LinkAdd(d); err != nil {
			t.Logf("no dummy link, not checked: %v", err)
			return nil
		}
		err := dumpNet(dir, 9, tid)
		if err == nil || !strings.Contains(err.Error(), "link amber-d0") || !strings.Contains(err.Error(), "kind dummy") {
			t.Errorf("dump of a namespace with a dummy link: %v; want a refusal naming it", err)
		}
		return nil
	})
	if err := RestoreNet(dir, 10, os.Getpid(), NetOptions{}); err == nil || !strings.Contains(err.Error(), "netdev-10.img") {
		t.Errorf("restore without netdev image: %v; want an error naming it", err)
	}
}

// linkFlags reads a link's flags (IFF_*) in the calling thread's
// network namespace.
func linkFlags(name string) (uint32, error) {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return 0, err
	}
	return l.Attrs().RawFlags, nil
}
