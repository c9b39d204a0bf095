package restore

import (
	"fmt"
	"strconv"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/inventory"
	"golang.org/x/sys/unix"

	"amber/internal/namespaces"
	"amber/internal/netfilter"
	"amber/internal/sockets"
)

// The network lock a dump left (package netfilter) is lifted once every
// task is restored and the TCP connections are in their dumped state,
// before they leave repair mode, as CRIU's network_unlock: in the tree's
// network namespace if it has one of its own (new, joined or external:
// the dump locked it whole, and its rules brought the lock back), else
// each connection of the images in amber's.

// netLockOf reads the lock of the inventory. Images without
// network_lock_method (amber's before it had a firewall lock, or a CRIU
// older than 3.16, which always used iptables) get none lifted: for
// CRIU's that leaves rules behind, where assuming iptables would fail
// on amber's.
func netLockOf(inv *inventory.InventoryEntry) (netfilter.Method, string) {
	if inv.NetworkLockMethod == nil {
		return netfilter.Skip, ""
	}
	return netfilter.Method(inv.GetNetworkLockMethod()), inv.GetDumpCriuRunId()
}

// unlockNetwork lifts the dump's lock. It only warns when that fails:
// the tree is restored, a rule left behind costs the connections it
// holds, not the restore.
func (r *restorer) unlockNetwork(tree *treeImages, rootPid int) {
	m := tree.netLock
	if m == netfilter.Skip {
		return
	}
	id := tree.netLockID
	if id == "" {
		// CRIU before dump_criu_run_id named the table after the root.
		id = strconv.Itoa(tree.root.pid)
	}
	lock := netfilter.Lock{RunID: id}
	var err error
	if r.ownNet {
		if err = notify(r.opts, "network-unlock", 0); err == nil {
			err = namespaces.InNamespace(rootPid, namespaces.Net, func() error { return lock.UnlockNetns(m) })
		}
	} else {
		conns := sockets.LockedConns(tree.root.files, tree.root.extra.TCPStreams)
		err = lock.UnlockConns(m, conns)
	}
	if err != nil {
		r.opts.Log.Warnf("lift the network lock of the dump (%v, run id %s): %v", m, id, err)
		return
	}
	r.opts.Log.Infof("lifted the network lock of the dump (%v, run id %s)", m, id)
}

// joinNet opens the network namespace --join-ns net:PATH names, for
// the root to join in place of a new one (the caller closes it); -1
// without --join-ns.
func joinNet(opts Options, nsFlags uintptr, dir string) (int, error) {
	if opts.JoinNet == "" {
		return -1, nil
	}
	if nsFlags&unix.CLONE_NEWNET == 0 {
		return -1, fmt.Errorf("--join-ns net:%s: the tree in %s was dumped in the dumper's network namespace, not one of its own", opts.JoinNet, dir)
	}
	fd, err := unix.Open(opts.JoinNet, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("--join-ns net:%s: %w", opts.JoinNet, err)
	}
	return fd, nil
}
