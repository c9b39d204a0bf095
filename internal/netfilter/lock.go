// Package netfilter holds a tree's network traffic in firewall rules
// while it is checkpointed (--network-lock), as CRIU's net.c and
// netfilter.c do, and saves and restores the iptables and nftables rules
// of a network namespace (rules.go).
//
// The lock outlives the dump: what a peer sends between the dump and the
// restore is dropped, not answered by the kernel with a RST because no
// socket is there any more, and the peer sends it again once the restore
// has lifted the lock. Two scopes, as CRIU:
//   - a tree in the dumper's network namespace: each of its TCP
//     connections, both ways (LockConns);
//   - a tree in a network namespace of its own: the whole namespace
//     (LockNetns); the lock is in place when the namespace's rules are
//     saved, so that a restore of them brings it back too.
//
// Every rule lets through packets that carry Mark (SOCCR_MARK), as
// CRIU's, so that a tool may still talk through the lock. The rules are
// made by the iptables-restore, ip6tables-restore and nft commands, each
// run once for a whole batch, in the calling thread's network namespace.
package netfilter

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Mark is CRIU's SOCCR_MARK: packets with this mark pass every lock.
const Mark = 0xC114

// Method is how the network is locked, with the values of CRIU's enum
// NETWORK_LOCK_METHOD, which the inventory's network_lock_method holds.
type Method uint32

// The lock methods.
const (
	IPTables Method = 0 // iptables and ip6tables rules (CRIU's default)
	NFTables Method = 1 // an nftables table of its own
	Skip     Method = 2 // no lock
)

// ParseMethod reads --network-lock's value, as CRIU's ("none" is
// "skip").
func ParseMethod(s string) (Method, error) {
	switch s {
	case "iptables":
		return IPTables, nil
	case "nftables":
		return NFTables, nil
	case "skip", "none":
		return Skip, nil
	}
	return 0, fmt.Errorf("--network-lock %q: want iptables, nftables or skip", s)
}

func (m Method) String() string {
	switch m {
	case IPTables:
		return "iptables"
	case NFTables:
		return "nftables"
	case Skip:
		return "skip"
	}
	return fmt.Sprintf("method %d", uint32(m))
}

// Conn is a TCP connection to lock: its local and its peer's address.
type Conn struct {
	Local, Peer netip.AddrPort
}

func (c Conn) String() string { return fmt.Sprintf("%v-%v", c.Local, c.Peer) }

// v4 is c with IPv4-mapped IPv6 addresses as IPv4 ones, and whether
// it is IPv4: such a connection's packets are IPv4 packets.
func (c Conn) v4() (Conn, bool) {
	if c.Peer.Addr().Is4In6() || c.Peer.Addr().Is4() {
		unmap := func(a netip.AddrPort) netip.AddrPort { return netip.AddrPortFrom(a.Addr().Unmap(), a.Port()) }
		return Conn{unmap(c.Local), unmap(c.Peer)}, true
	}
	return c, false
}

// Lock names one lock: the nftables table it is made of. CRIU names it
// after the dump's run id (the inventory's dump_criu_run_id) and cuts
// the name at 31 bytes; amber does the same, so that each tool lifts
// the other's lock.
type Lock struct {
	RunID string
}

// table is the family and name of the lock's nftables table, as CRIU
// has it ("inet CRIU-ID", at most 31 bytes).
func (l Lock) table() string {
	t := "inet CRIU-" + l.RunID
	return t[:min(len(t), 31)]
}

// LockConns locks connections conns with method m, in the calling
// thread's network namespace.
func (l Lock) LockConns(m Method, conns []Conn) error {
	if len(conns) == 0 {
		return nil
	}
	switch m {
	case IPTables:
		return iptablesConns(conns, "-I")
	case NFTables:
		return nft(l.connsScript(conns))
	case Skip:
		return nil
	}
	return fmt.Errorf("network lock %v: unknown method", m)
}

// UnlockConns lifts LockConns's lock; rules or a table that are not
// there are no error.
func (l Lock) UnlockConns(m Method, conns []Conn) error {
	switch m {
	case IPTables:
		if len(conns) == 0 {
			return nil
		}
		if iptablesConns(conns, "-D") == nil {
			// A rule there twice (a dump killed before it could lift
			// its lock, then another) keeps one copy through a batch
			// deletion: the rules are looked for once more.
			left, err := iptablesLeft(conns)
			if err != nil || len(left) == 0 {
				return err
			}
			conns = left
		}
		// Some rule is not there (a dump with --leave-running lifted
		// them already): one by one, those that are.
		return retried(func() error { return iptablesEach(conns) })
	case NFTables:
		return l.dropTable()
	case Skip:
		return nil
	}
	return fmt.Errorf("network lock %v: unknown method", m)
}

// LockNetns locks the whole network namespace of the calling thread:
// nothing goes in or out but marked packets.
func (l Lock) LockNetns(m Method) error {
	switch m {
	case IPTables:
		return iptablesNetns(netnsLockRules)
	case NFTables:
		t := l.table()
		return nft(fmt.Sprintf("create table %[1]s\n"+
			"add chain %[1]s output { type filter hook output priority 0; policy drop; }\n"+
			"add rule %[1]s output meta mark %#[2]x accept\n"+
			"add chain %[1]s input { type filter hook input priority 0; policy drop; }\n"+
			"add rule %[1]s input meta mark %#[2]x accept\n", t, Mark))
	case Skip:
		return nil
	}
	return fmt.Errorf("network lock %v: unknown method", m)
}

// UnlockNetns lifts LockNetns's lock. A lock that is not there (the
// namespace's rules came back without it) is no error.
func (l Lock) UnlockNetns(m Method) error {
	switch m {
	case IPTables:
		for _, tool := range []string{"iptables", "ip6tables"} {
			if err := retried(func() error { return unlockChain(tool) }); err != nil {
				return err
			}
		}
		return nil
	case NFTables:
		return l.dropTable()
	case Skip:
		return nil
	}
	return fmt.Errorf("network lock %v: unknown method", m)
}

// The rules of a whole namespace's lock with iptables: a chain CRIU
// that both INPUT and OUTPUT go through first, dropping what is not
// marked; CRIU's own, so that either tool lifts the other's lock.
var netnsLockRules = fmt.Sprintf("*filter\n:CRIU - [0:0]\n-I INPUT -j CRIU\n-I OUTPUT -j CRIU\n"+
	"-A CRIU -m mark --mark %#x -j ACCEPT\n-A CRIU -j DROP\nCOMMIT\n", Mark)

// unlockChain removes, with tool (iptables or ip6tables), every jump to
// the chain CRIU and then the chain. A rules image saved by "nft list
// ruleset" and loaded again may hold a jump twice, as CRIU found. Only
// iptables' own "not there" (exit 1) of -L for the chain, and of -C for
// a jump once the chain is known to be there (-C of a jump to a missing
// chain exits 2), says there is nothing (more) to remove; any other
// failure is the unlock's, tried again by the caller.
func unlockChain(tool string) error {
	if err := run(tool, "", "-w", "-n", "-L", "CRIU"); err != nil {
		if exitCode(err) == 1 {
			return nil // no chain, so no jump to it
		}
		return err
	}
	for _, chain := range []string{"INPUT", "OUTPUT"} {
		for range 8 {
			if err := run(tool, "", "-w", "-C", chain, "-j", "CRIU"); err != nil {
				if exitCode(err) == 1 {
					break // no (more) jump
				}
				return err
			}
			if err := run(tool, "", "-w", "-D", chain, "-j", "CRIU"); err != nil {
				return err
			}
		}
	}
	if err := run(tool, "", "-w", "-F", "CRIU"); err != nil {
		return err
	}
	return run(tool, "", "-w", "-X", "CRIU")
}

// iptablesNetns loads rules with iptables-restore and
// ip6tables-restore.
func iptablesNetns(rules string) error {
	for _, tool := range []string{"iptables-restore", "ip6tables-restore"} {
		if err := run(tool, rules, "-w", "--noflush"); err != nil {
			return err
		}
	}
	return nil
}

// iptablesConns inserts (-I) or deletes (-D) the rules that drop each
// connection's unmarked packets both ways, one batch per family.
func iptablesConns(conns []Conn, op string) error {
	var v4, v6 []string
	for _, c := range conns {
		c, is4 := c.v4()
		rules := []string{
			connRule(op, "INPUT", c.Peer, c.Local),
			connRule(op, "OUTPUT", c.Local, c.Peer),
		}
		if is4 {
			v4 = append(v4, rules...)
		} else {
			v6 = append(v6, rules...)
		}
	}
	for _, b := range []struct {
		tool  string
		rules []string
	}{{"iptables-restore", v4}, {"ip6tables-restore", v6}} {
		if len(b.rules) == 0 {
			continue
		}
		slices.Sort(b.rules)
		batch := "*filter\n" + strings.Join(slices.Compact(b.rules), "\n") + "\nCOMMIT\n"
		if err := run(b.tool, batch, "-w", "--noflush"); err != nil {
			return err
		}
	}
	return nil
}

// iptablesLeft returns the connections of conns that a rule of their
// lock still names, as iptables-save and ip6tables-save show them.
func iptablesLeft(conns []Conn) ([]Conn, error) {
	saved := map[bool]string{}
	var left []Conn
	for _, c := range conns {
		c4, is4 := c.v4()
		if _, ok := saved[is4]; !ok {
			tool := map[bool]string{true: "iptables-save", false: "ip6tables-save"}[is4]
			out, err := exec.Command(tool, "-t", "filter").Output()
			if err != nil {
				return nil, fmt.Errorf("%s: %w", tool, err)
			}
			saved[is4] = string(out)
		}
		for _, line := range strings.Split(saved[is4], "\n") {
			if lockRuleOf(line, c4) {
				left = append(left, c)
				break
			}
		}
	}
	return left, nil
}

// lockRuleOf tells whether line, a rule as iptables-save prints it, is
// one of c's lock (connRule): the mark, and c's addresses and ports one
// way or the other.
func lockRuleOf(line string, c Conn) bool {
	f := strings.Fields(line)
	if len(f) < 2 || f[0] != "-A" || !slices.Contains(f, fmt.Sprintf("%#x", Mark)) {
		return false
	}
	val := func(opt string) string {
		if i := slices.Index(f, opt); i >= 0 && i+1 < len(f) {
			return f[i+1]
		}
		return ""
	}
	addr := func(opt string) netip.Addr {
		p, err := netip.ParsePrefix(val(opt))
		if err != nil {
			return netip.Addr{}
		}
		return p.Addr()
	}
	src := netip.AddrPortFrom(addr("-s"), parsePort(val("--sport")))
	dst := netip.AddrPortFrom(addr("-d"), parsePort(val("--dport")))
	return src == c.Peer && dst == c.Local || src == c.Local && dst == c.Peer
}

// parsePort reads a port number, 0 if it is none.
func parsePort(s string) uint16 {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return 0
	}
	return uint16(n)
}

// iptablesEach deletes the rules of conns that are there, each on its
// own.
func iptablesEach(conns []Conn) error {
	for _, c := range conns {
		c, is4 := c.v4()
		tool := "ip6tables"
		if is4 {
			tool = "iptables"
		}
		for _, r := range []string{connRule("-C", "INPUT", c.Peer, c.Local), connRule("-C", "OUTPUT", c.Local, c.Peer)} {
			args := append([]string{"-w"}, strings.Fields(r)...)
			if err := run(tool, "", args...); err != nil {
				if exitCode(err) == 1 {
					continue // not there
				}
				return err // iptables failed: the rule may be there
			}
			args[1] = "-D"
			if err := run(tool, "", args...); err != nil {
				return err
			}
		}
	}
	return nil
}

// exitCode is the exit status of the tool that failed with err, or -1.
// iptables -C exits 1 when the rule is not there, otherwise 2 or more.
func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

// connRule is CRIU's rule for the packets of chain from src to dst.
func connRule(op, chain string, src, dst netip.AddrPort) string {
	return fmt.Sprintf("%s %s -p tcp -m mark ! --mark %#x -s %v --sport %d -d %v --dport %d -j DROP",
		op, chain, Mark, src.Addr(), src.Port(), dst.Addr(), dst.Port())
}

// connsScript is the nft script of a connection lock: the table with
// its chains (marked packets pass) and a set of connections per family
// (each both ways) whose packets are dropped.
func (l Lock) connsScript(conns []Conn) string {
	var b strings.Builder
	t := l.table()
	fmt.Fprintf(&b, "create table %s\n", t)
	for _, hook := range []string{"output", "input"} {
		fmt.Fprintf(&b, "add chain %[1]s %[2]s { type filter hook %[2]s priority 0; }\n", t, hook)
		fmt.Fprintf(&b, "add rule %s %s meta mark %#x accept\n", t, hook, Mark)
	}
	for _, f := range []struct{ set, addr, ip string }{{"conns4", "ipv4_addr", "ip"}, {"conns6", "ipv6_addr", "ip6"}} {
		fmt.Fprintf(&b, "add set %s %s { type %s . inet_service . %s . inet_service; }\n", t, f.set, f.addr, f.addr)
		for _, hook := range []string{"output", "input"} {
			fmt.Fprintf(&b, "add rule %s %s %s saddr . tcp sport . %s daddr . tcp dport @%s drop\n", t, hook, f.ip, f.ip, f.set)
		}
	}
	for _, c := range conns {
		c, is4 := c.v4()
		set := "conns6"
		if is4 {
			set = "conns4"
		}
		for _, e := range [][2]netip.AddrPort{{c.Peer, c.Local}, {c.Local, c.Peer}} {
			fmt.Fprintf(&b, "add element %s %s { %v . %d . %v . %d }\n", t, set, e[0].Addr(), e[0].Port(), e[1].Addr(), e[1].Port())
		}
	}
	return b.String()
}

// dropTable deletes the lock's nftables table, if it is there. It does
// not ask first: one transaction adds the table (nothing, if it is
// there) and deletes it, so that a lock that is gone is no error and
// every other failure of nft is one. (Asking with "nft list table" took
// any failure of that command for "no such table", and left a lock in
// place while the restore said it had lifted it.)
func (l Lock) dropTable() error {
	script := fmt.Sprintf("add table %[1]s\ndelete table %[1]s\n", l.table())
	return retried(func() error { return nft(script) })
}

// retried runs an unlock, and twice more, 100 ms apart, while it fails:
// the tools are separate programs that can fail for a moment (the xtables
// lock, another nft transaction), and a lock left in place cuts the
// restored connections.
func retried(unlock func() error) error {
	err := unlock()
	for try := 0; err != nil && try < 2; try++ {
		time.Sleep(100 * time.Millisecond)
		err = unlock()
	}
	return err
}

// nft runs an nft script.
func nft(script string) error {
	return run("nft", script, "-f", "-")
}

// run runs tool with args, script on its standard input; its output
// goes into the error.
func run(tool, script string, args ...string) error {
	cmd := exec.Command(tool, args...)
	cmd.Stdin = strings.NewReader(script)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(out.String())
		if errors.Is(err, exec.ErrNotFound) {
			return fmt.Errorf("%s: %w (install it, or choose another --network-lock)", tool, err)
		}
		return fmt.Errorf("%s %s: %w: %s\ninput:\n%s", tool, strings.Join(args, " "), err, msg, script)
	}
	return nil
}
