package dump

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os/exec"

	"amber/internal/namespaces"
	"amber/internal/netfilter"
)

// The network lock (--network-lock, package netfilter), as CRIU's
// cr_dump_tasks takes it: a tree in a network namespace of its own has
// the whole namespace locked before anything of it is dumped, so that
// its saved rules hold the lock; a tree in amber's has its TCP
// connections locked once all are in repair mode, in one batch (each
// socket drops what arrives from the moment it is put in repair mode,
// sockets/tcp.go, so nothing is lost meanwhile). The lock stays when
// the dump kills the tree, for the restore to lift; a dump that fails
// or leaves the tree running lifts it again.

// netLock is the state of one dump's lock.
type netLock struct {
	lock netfilter.Lock
	// method is the lock's: --network-lock's, or Skip once the default
	// method's tool proved missing.
	method netfilter.Method
	// netnsPid is the task whose network namespace is locked whole, 0
	// if the lock is of conns.
	netnsPid int
	conns    []netfilter.Conn
	held     bool // rules are in place
}

// newRunID is a random (version 4) UUID, as CRIU's criu_run_id: the
// lock's nftables table is named after it.
func newRunID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// lockNetns locks the tree's network namespace if it has one of its
// own, after CRIU's "network-lock" notification.
func (d *dumper) lockNetns(ns *namespaces.Table, root int) error {
	if _, own := ns.Own(namespaces.Net); !own || d.net.method == netfilter.Skip {
		return nil
	}
	if err := d.notify("network-lock"); err != nil {
		return err
	}
	d.net.netnsPid = root
	err := namespaces.InNamespace(root, namespaces.Net, func() error { return d.net.lock.LockNetns(d.net.method) })
	return d.lockTaken("the network namespace of pid "+fmt.Sprint(root), err)
}

// lockConns locks the TCP connections the dump put in repair mode, if
// the tree is in amber's network namespace.
func (d *dumper) lockConns() error {
	if d.net.netnsPid != 0 || d.net.method == netfilter.Skip {
		return nil
	}
	conns := d.fds.TCPConns()
	if len(conns) == 0 {
		return nil
	}
	d.net.conns = conns
	return d.lockTaken(fmt.Sprintf("%d TCP connections", len(conns)), d.net.lock.LockConns(d.net.method, conns))
}

// lockTaken records the outcome of taking the lock of what. Without
// the tool of the default method (iptables, not chosen with
// --network-lock) the dump goes on, its connections held by amber's
// own lock alone, with a warning.
func (d *dumper) lockTaken(what string, err error) error {
	if err == nil {
		d.net.held = true
		d.log.Infof("locked %s with %v (run id %s)", what, d.net.method, d.net.lock.RunID)
		return nil
	}
	if errors.Is(err, exec.ErrNotFound) && !d.opts.NetworkLockSet {
		d.log.Warnf("network lock of %s: %v: not locked by the firewall", what, err)
		d.net.method = netfilter.Skip
		return nil
	}
	return fmt.Errorf("network lock (--network-lock %v) of %s: %w", d.net.method, what, err)
}

// unlockNetwork lifts the lock of a dump that failed or left the tree
// running.
func (d *dumper) unlockNetwork() error {
	if !d.net.held {
		return nil
	}
	d.net.held = false
	m := d.net.method
	var err error
	if d.net.netnsPid != 0 {
		err = namespaces.InNamespace(d.net.netnsPid, namespaces.Net, func() error { return d.net.lock.UnlockNetns(m) })
	} else {
		err = d.net.lock.UnlockConns(m, d.net.conns)
	}
	if err != nil {
		return fmt.Errorf("lift the network lock (%v): %w", m, err)
	}
	return nil
}
