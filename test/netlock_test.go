package test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestNetworkLock dumps tcp_peer_lock, whose connections' peer is the
// test, outside the dumped tree, and sends on them while the program is
// gone: the network lock (--network-lock, iptables by default, as CRIU's)
// must hold what the test sent then, as rules that outlive the dump, so
// that the test's kernel sends it again after the restore instead of
// meeting a reset; and the restore must lift the lock. The program
// checks that every byte came, in order.
func TestNetworkLock(t *testing.T) {
	for _, m := range []struct {
		name string
		args []string
		tool string
	}{
		{"iptables_default", nil, "iptables-save"},
		{"iptables", []string{"--network-lock", "iptables"}, "iptables-save"},
		{"nftables", []string{"--network-lock", "nftables"}, "nft"},
	} {
		t.Run(m.name, func(t *testing.T) {
			requireTool(t, m.tool, "apt-get install iptables nftables")
			testNetworkLock(t, m.args)
		})
	}
}

func testNetworkLock(t *testing.T, lockArgs []string) {
	c := startCase(t, "tcp_peer_lock")
	conns, ports := dialPeerLock(t, c)
	stale := lockRules(t, ports, nil)
	send(t, conns, "A")
	c.mustDump(append([]string{"--tcp-established"}, lockArgs...)...)
	if n := len(lockRules(t, ports, stale)); n == 0 {
		t.Fatalf("no network lock after the dump: no rule or table with mark %#x", 0xc114)
	}
	// Sent while the program is gone: the lock drops it, the test's
	// kernel sends it again. Time for a reset to come back, were there
	// none.
	send(t, conns, "B")
	time.Sleep(300 * time.Millisecond)
	c.mustRestoreDetached()
	if n := len(lockRules(t, ports, stale)); n != 0 {
		t.Errorf("%d rules of the network lock left after the restore", n)
	}
	send(t, conns, "C")
	for _, conn := range conns {
		waitAcked(t, conn)
	}
	c.mustPass()
}

// TestNetworkLockNetns dumps netns_rules, in a network namespace of its
// own with nftables (and legacy iptables) rules and a TCP connection to
// itself: the dump must lock the whole namespace (iptables by default,
// as CRIU's, or nftables) before it saves the rules, which then hold
// the lock; the restore must bring the rules back and lift the lock.
// The program checks its rules, that no lock is left, and that its
// connection carries data both ways.
func TestNetworkLockNetns(t *testing.T) {
	for _, m := range []struct {
		name string
		args []string
		tool string
	}{
		{"iptables_default", nil, "iptables-restore"},
		{"nftables", []string{"--network-lock", "nftables"}, "nft"},
	} {
		t.Run(m.name, func(t *testing.T) {
			requireTool(t, "nft", "apt-get install nftables")
			requireTool(t, m.tool, "apt-get install iptables nftables")
			c := startCase(t, "netns_rules")
			c.mustDump(m.args...)
			saved, err := os.ReadFile(filepath.Join(c.images, fmt.Sprintf("nftables-%d.img", c.netnsID())))
			if err != nil {
				t.Fatal(err)
			}
			for _, want := range []string{"table inet amber_rules", "CRIU"} {
				if !strings.Contains(string(saved), want) {
					t.Errorf("the saved nftables rules lack %q (the namespace's own, or the lock):\n%s", want, saved)
				}
			}
			c.mustRestoreDetached()
			c.mustPass()
		})
	}
}

// dialPeerLock connects to tcp_peer_lock's listeners, and waits until
// it accepted both connections; it returns them and the ports.
func dialPeerLock(t *testing.T, c *zcase) ([]*net.TCPConn, []int) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(c.dir, "ports"))
	if err != nil {
		t.Fatal(err)
	}
	var p4, p6 int
	if _, err := fmt.Sscan(string(b), &p4, &p6); err != nil {
		t.Fatalf("ports %q: %v", b, err)
	}
	var conns []*net.TCPConn
	for _, addr := range []string{fmt.Sprintf("127.0.0.1:%d", p4), fmt.Sprintf("[::1]:%d", p6)} {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		conns = append(conns, conn.(*net.TCPConn))
	}
	for deadline := time.Now().Add(readyTimeout); !c.hasLine("accepted"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("tcp_peer_lock did not accept the connections:\n%s", c.output())
		}
	}
	return conns, []int{p4, p6}
}

func send(t *testing.T, conns []*net.TCPConn, s string) {
	t.Helper()
	for _, conn := range conns {
		if _, err := conn.Write([]byte(s)); err != nil {
			t.Fatalf("send %q to %v: %v", s, conn.RemoteAddr(), err)
		}
	}
}

// waitAcked waits until the program's side acknowledged every byte the
// test sent on conn (its send queue is empty), or its connection broke.
func waitAcked(t *testing.T, conn *net.TCPConn) {
	t.Helper()
	raw, err := conn.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
		var n int
		var qerr error
		raw.Control(func(fd uintptr) { n, qerr = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ) })
		if qerr != nil {
			t.Fatalf("%v: SIOCOUTQ: %v", conn.RemoteAddr(), qerr)
		}
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%v: %d bytes still not acknowledged a minute after the restore", conn.RemoteAddr(), n)
		}
	}
}

// lockRules returns the rules of a network lock on the connections to
// ports in the test's network namespace but those of stale: iptables and
// ip6tables rules with CRIU's mark, and elements of the sets of nftables
// tables. (Other tests may lock connections of their own meanwhile, and
// a dump that no restore followed leaves its lock, as CRIU's does: one
// of a port the kernel gave again is stale.)
func lockRules(t *testing.T, ports []int, stale []string) []string {
	t.Helper()
	var text string
	for _, cmd := range [][]string{{"iptables-save"}, {"ip6tables-save"}, {"nft", "list", "ruleset"}} {
		if _, err := exec.LookPath(cmd[0]); err != nil {
			continue
		}
		out, err := exec.Command(cmd[0], cmd[1:]...).CombinedOutput()
		if err != nil {
			t.Fatalf("%v: %v: %s", cmd, err, out)
		}
		text += string(out)
	}
	var found []string
	for _, p := range ports {
		rule := regexp.MustCompile(fmt.Sprintf(`(?m)^-A .*0xc114 .*--[sd]port %d\b.*$|^.*\. %d\b.*$`, p, p))
		for _, r := range rule.FindAllString(text, -1) {
			if !slices.Contains(stale, r) {
				found = append(found, r)
			}
		}
	}
	return found
}

// requireTool skips t, or fails it on CI, without tool.
func requireTool(t *testing.T, tool, install string) {
	t.Helper()
	if _, err := exec.LookPath(tool); err != nil {
		missing(t, fmt.Sprintf("needs %s: %s", tool, install))
	}
}
