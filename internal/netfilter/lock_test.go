package netfilter

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// inNewNetns runs fn on a thread in a network namespace of its own,
// which dies with the thread.
func inNewNetns(t *testing.T, fn func()) {
	t.Helper()
	if unix.Geteuid() != 0 {
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
		fn()
	}()
	<-done
}

func needTool(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
}

// show is what tool prints of the namespace's rules.
func show(t *testing.T, tool string, args ...string) string {
	out, err := exec.Command(tool, args...).CombinedOutput()
	if err != nil {
		t.Errorf("%s %v: %v: %s", tool, args, err, out)
	}
	return string(out)
}

var testConns = []Conn{
	{netip.MustParseAddrPort("127.0.0.1:8880"), netip.MustParseAddrPort("127.0.0.1:45678")},
	{netip.MustParseAddrPort("[::ffff:10.0.0.1]:80"), netip.MustParseAddrPort("[::ffff:10.0.0.2]:4000")},
	{netip.MustParseAddrPort("[::1]:8880"), netip.MustParseAddrPort("[::1]:45679")},
}

func TestLockConnsIPTables(t *testing.T) {
	needTool(t, "iptables-restore", "ip6tables-restore", "iptables-save", "ip6tables-save")
	inNewNetns(t, func() {
		l := Lock{RunID: "0f3a2c1e-5b6d-4e7f-8a9b-0c1d2e3f4a5b"}
		if err := l.LockConns(IPTables, testConns); err != nil {
			t.Fatal(err)
		}
		v4, v6 := show(t, "iptables-save"), show(t, "ip6tables-save")
		for _, want := range []string{
			"-A INPUT -s 127.0.0.1/32 -d 127.0.0.1/32 -p tcp -m mark ! --mark 0xc114 -m tcp --sport 45678 --dport 8880 -j DROP",
			"-A OUTPUT -s 10.0.0.1/32 -d 10.0.0.2/32 -p tcp -m mark ! --mark 0xc114 -m tcp --sport 80 --dport 4000 -j DROP",
		} {
			if !strings.Contains(v4, want) {
				t.Errorf("iptables-save lacks %q:\n%s", want, v4)
			}
		}
		if want := "-A INPUT -s ::1/128 -d ::1/128 -p tcp -m mark ! --mark 0xc114 -m tcp --sport 45679 --dport 8880 -j DROP"; !strings.Contains(v6, want) {
			t.Errorf("ip6tables-save lacks %q:\n%s", want, v6)
		}
		if err := l.UnlockConns(IPTables, testConns); err != nil {
			t.Fatal(err)
		}
		if v4, v6 := show(t, "iptables-save"), show(t, "ip6tables-save"); strings.Contains(v4+v6, "0xc114") {
			t.Errorf("rules left after unlock:\n%s%s", v4, v6)
		}
		// Half the rules gone already: the others go, and no error.
		if err := l.LockConns(IPTables, testConns); err != nil {
			t.Fatal(err)
		}
		if err := l.UnlockConns(IPTables, testConns[:1]); err != nil {
			t.Fatal(err)
		}
		if err := l.UnlockConns(IPTables, testConns); err != nil {
			t.Errorf("unlock with some rules gone: %v", err)
		}
		if v4, v6 := show(t, "iptables-save"), show(t, "ip6tables-save"); strings.Contains(v4+v6, "0xc114") {
			t.Errorf("rules left after the second unlock:\n%s%s", v4, v6)
		}
	})
}

// TestUnlockIPTablesLeft: a lock whose rules are there twice (a batch
// deletion takes one of each) is lifted whole, the rules left found and
// deleted one by one.
func TestUnlockIPTablesLeft(t *testing.T) {
	needTool(t, "iptables-restore", "ip6tables-restore", "iptables-save", "ip6tables-save", "iptables", "ip6tables")
	inNewNetns(t, func() {
		l := Lock{RunID: "0f3a2c1e-5b6d-4e7f-8a9b-0c1d2e3f4a5b"}
		if err := l.LockConns(IPTables, testConns); err != nil {
			t.Fatal(err)
		}
		if err := l.LockConns(IPTables, testConns[1:]); err != nil {
			t.Fatal(err)
		}
		if err := l.UnlockConns(IPTables, testConns); err != nil {
			t.Fatal(err)
		}
		if v4, v6 := show(t, "iptables-save"), show(t, "ip6tables-save"); strings.Contains(v4+v6, "0xc114") {
			t.Errorf("rules left:\n%s%s", v4, v6)
		}
	})
}

// TestLockRuleOf: the rules of a connection's lock as iptables-save
// prints them, both ways, and not another connection's.
func TestLockRuleOf(t *testing.T) {
	c := Conn{netip.MustParseAddrPort("127.0.0.1:8880"), netip.MustParseAddrPort("127.0.0.1:45678")}
	for _, tc := range []struct {
		line string
		want bool
	}{
		{"-A INPUT -s 127.0.0.1/32 -d 127.0.0.1/32 -p tcp -m mark ! --mark 0xc114 -m tcp --sport 45678 --dport 8880 -j DROP", true},
		{"-A OUTPUT -s 127.0.0.1/32 -d 127.0.0.1/32 -p tcp -m mark ! --mark 0xc114 -m tcp --sport 8880 --dport 45678 -j DROP", true},
		{"-A INPUT -s 127.0.0.1/32 -d 127.0.0.1/32 -p tcp -m mark ! --mark 0xc114 -m tcp --sport 45679 --dport 8880 -j DROP", false},
		{"-A INPUT -s 127.0.0.1/32 -d 127.0.0.1/32 -p tcp -m tcp --sport 45678 --dport 8880 -j DROP", false},
		{":INPUT ACCEPT [0:0]", false},
	} {
		if got := lockRuleOf(tc.line, c); got != tc.want {
			t.Errorf("%q: %v, want %v", tc.line, got, tc.want)
		}
	}
}

func TestLockConnsNFTables(t *testing.T) {
	needTool(t, "nft")
	inNewNetns(t, func() {
		l := Lock{RunID: "0f3a2c1e-5b6d-4e7f-8a9b-0c1d2e3f4a5b"}
		if err := l.LockConns(NFTables, testConns); err != nil {
			t.Fatal(err)
		}
		// CRIU's name, cut at 31 bytes.
		out := show(t, "nft", "list", "table", "inet", "CRIU-0f3a2c1e-5b6d-4e7f-8a")
		for _, want := range []string{"127.0.0.1 . 45678 . 127.0.0.1 . 8880", "10.0.0.1 . 80 . 10.0.0.2 . 4000", "::1 . 8880 . ::1 . 45679"} {
			if !strings.Contains(out, want) {
				t.Errorf("nft table lacks %q:\n%s", want, out)
			}
		}
		if err := l.UnlockConns(NFTables, testConns); err != nil {
			t.Fatal(err)
		}
		if out := show(t, "nft", "list", "tables"); out != "" {
			t.Errorf("tables left after unlock:\n%s", out)
		}
		if err := l.UnlockConns(NFTables, testConns); err != nil {
			t.Errorf("second unlock: %v", err)
		}
	})
}

// TestUnlockNFTablesFailing runs the nftables unlocks with an nft that
// always fails: that is an error to report, not a lock that is gone (a
// restore said it had lifted a lock that was still there).
func TestUnlockNFTablesFailing(t *testing.T) {
	dir := t.TempDir()
	fake := "#!/bin/sh\necho 'netlink: Error: cannot talk to the kernel' >&2\nexit 1\n"
	if err := os.WriteFile(filepath.Join(dir, "nft"), []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir)
	l := Lock{RunID: "run"}
	if err := l.UnlockConns(NFTables, testConns); err == nil || !strings.Contains(err.Error(), "cannot talk") {
		t.Errorf("UnlockConns with a failing nft: %v, want its error", err)
	}
	if err := l.UnlockNetns(NFTables); err == nil || !strings.Contains(err.Error(), "cannot talk") {
		t.Errorf("UnlockNetns with a failing nft: %v, want its error", err)
	}
}

// TestUnlockIPTablesFailing runs the iptables unlock with tools that
// fail as iptables does when it cannot work (exit 4): the rules may be
// there, so that is an error, where "-C" failing was taken for "not
// there". iptables -C's own "not there" (exit 1) is no error.
func TestUnlockIPTablesFailing(t *testing.T) {
	for _, c := range []struct {
		code    int
		wantErr bool
	}{{4, true}, {1, false}} {
		dir := t.TempDir()
		restore := "#!/bin/sh\necho 'iptables-restore: line 2 failed' >&2\nexit 1\n"
		check := fmt.Sprintf("#!/bin/sh\necho 'iptables: cannot work now' >&2\nexit %d\n", c.code)
		for name, script := range map[string]string{"iptables-restore": restore, "ip6tables-restore": restore, "iptables": check, "ip6tables": check} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(script), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		t.Setenv("PATH", dir)
		err := Lock{RunID: "run"}.UnlockConns(IPTables, testConns)
		if c.wantErr && (err == nil || !strings.Contains(err.Error(), "cannot work now")) {
			t.Errorf("iptables -C exiting %d: %v, want its error", c.code, err)
		}
		if !c.wantErr && err != nil {
			t.Errorf("iptables -C exiting %d (no such rule): %v, want none", c.code, err)
		}
	}
}

// TestUnlockNetnsIPTablesFailing: a whole namespace's iptables unlock
// takes only iptables' own "not there" (exit 1) of -L for the chain,
// or of -C for a jump, for nothing to remove; any other failure of
// either is the unlock's error.
func TestUnlockNetnsIPTablesFailing(t *testing.T) {
	for _, c := range []struct {
		list, check int
		wantErr     string
	}{{1, 0, ""}, {4, 0, "cannot list"}, {0, 1, ""}, {0, 4, "cannot check"}} {
		dir := t.TempDir()
		tool := fmt.Sprintf("#!/bin/sh\ncase \"$*\" in\n*-L*) echo 'iptables: cannot list' >&2; exit %d;;\n"+
			"*-C*) echo 'iptables: cannot check' >&2; exit %d;;\nesac\nexit 0\n", c.list, c.check)
		for _, name := range []string{"iptables", "ip6tables"} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(tool), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		t.Setenv("PATH", dir)
		err := Lock{RunID: "run"}.UnlockNetns(IPTables)
		if c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)) {
			t.Errorf("-L exiting %d, -C exiting %d: %v, want the tool's error", c.list, c.check, err)
		}
		if c.wantErr == "" && err != nil {
			t.Errorf("-L exiting %d, -C exiting %d (nothing there): %v, want none", c.list, c.check, err)
		}
	}
}

func TestLockNetns(t *testing.T) {
	for _, m := range []Method{IPTables, NFTables} {
		t.Run(m.String(), func(t *testing.T) {
			if m == IPTables {
				needTool(t, "iptables", "ip6tables", "iptables-restore", "ip6tables-restore")
			} else {
				needTool(t, "nft")
			}
			inNewNetns(t, func() {
				l := Lock{RunID: "run"}
				if err := l.LockNetns(m); err != nil {
					t.Fatal(err)
				}
				before := show(t, "nft", "list", "ruleset")
				if !strings.Contains(before, "0x0000c114") {
					t.Errorf("no lock in the ruleset:\n%s", before)
				}
				if err := l.UnlockNetns(m); err != nil {
					t.Fatal(err)
				}
				if after := show(t, "nft", "list", "ruleset"); strings.Contains(after, "c114") || strings.Contains(after, "CRIU") {
					t.Errorf("lock left after unlock:\n%s", after)
				}
				// Unlocking again finds nothing to lift, and says nothing.
				if err := l.UnlockNetns(m); err != nil {
					t.Errorf("second unlock: %v", err)
				}
			})
		})
	}
}

func TestParseMethod(t *testing.T) {
	for in, want := range map[string]Method{"iptables": IPTables, "nftables": NFTables, "skip": Skip, "none": Skip} {
		if m, err := ParseMethod(in); err != nil || m != want {
			t.Errorf("ParseMethod(%q) = %v, %v", in, m, err)
		}
	}
	if _, err := ParseMethod("ebtables"); err == nil || !strings.Contains(err.Error(), "ebtables") {
		t.Errorf("ParseMethod(ebtables) = %v", err)
	}
}
