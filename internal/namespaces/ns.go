// Package namespaces dumps and restores the namespaces of a tree, as
// CRIU's namespaces.c, uts_ns.c and ipc_ns.c do: one file per kind, its
// dump and its restore side by side.
//
// A namespace is named in the images by an id, the same for every task
// in it (TaskKobjIdsEntry of ids-PID.img; the inventory's root_ids are
// the dumper's own). amber's own namespaces keep the fixed ids 1 to 8 of
// the kinds' order here, so a tree living in amber's namespaces gets the
// images it always had; every other namespace gets the next free id. A
// restore creates a new namespace of a kind when the root task's id of
// that kind differs from the inventory's, as CRIU's does: a tree dumped
// in the dumper's namespaces is restored in the restorer's.
//
// amber dumps the UTS namespace (utsns-ID.img: host and domain name),
// the IPC namespace's settings (ipcns-var-ID.img: its sysctls; its
// System V objects are package ipc's, which the caller restores before
// the settings), the
// mount namespace (package mounts: the caller dumps and restores its
// mounts, Table.Own tells its id), the pid namespace whose init is the
// root of the tree (no image: the pids in pstree.img are the
// namespace's), the clocks of a time namespace (timens-ID.img, time.go)
// and the network namespaces: the root's and any other a task of the
// tree is in (Table.AddTasks), each with its loopback, veth and bridge
// links, addresses and routes (net.go), or none of it with --empty-ns
// net, and the user namespace (userns-ID.img: its uid and gid maps,
// userns.go), which a restore makes first so that it owns the others.
// A namespace of another kind that is not amber's is not dumped: the
// tree is restored in the restorer's
// namespace of that kind, and the dump says so in its log.
//
// Dump and restore enter a namespace on a thread of their own (setns),
// never on the thread that traces the tree, and leave it before the
// thread runs anything else; a thread that cannot go back is ended.
package namespaces

import (
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// Kind is one kind of namespace: its name under /proc/PID/ns and its
// clone flag.
type Kind struct {
	Name string
	Flag uintptr
}

// The kinds of namespaces, in the order of amber's own ids (1 to 8).
var (
	PID    = Kind{"pid", unix.CLONE_NEWPID}
	Net    = Kind{"net", unix.CLONE_NEWNET}
	IPC    = Kind{"ipc", unix.CLONE_NEWIPC}
	UTS    = Kind{"uts", unix.CLONE_NEWUTS}
	Time   = Kind{"time", unix.CLONE_NEWTIME}
	Mnt    = Kind{"mnt", unix.CLONE_NEWNS}
	User   = Kind{"user", unix.CLONE_NEWUSER}
	Cgroup = Kind{"cgroup", unix.CLONE_NEWCGROUP}
)

// Kinds lists every kind, in the order of amber's own ids.
var Kinds = []Kind{PID, Net, IPC, UTS, Time, Mnt, User, Cgroup}

// inode returns the inode of pid's namespace of kind k, which names the
// namespace while it lives.
func inode(pid int, k Kind) (uint64, error) {
	path := fmt.Sprintf("/proc/%d/ns/%s", pid, k.Name)
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, fmt.Errorf("%s namespace of pid %d: %w", k.Name, pid, err)
	}
	return st.Ino, nil
}

// InNamespace runs fn on a thread of its own that has entered the
// namespace of kind k that pid is in (/proc/PID/ns/NAME), and leaves it
// again. Only kinds a single thread may enter (uts, ipc, net, cgroup,
// time for its children) are allowed.
func InNamespace(pid int, k Kind, fn func() error) error {
	target, err := os.Open(fmt.Sprintf("/proc/%d/ns/%s", pid, k.Name))
	if err != nil {
		return fmt.Errorf("%s namespace of pid %d: %w", k.Name, pid, err)
	}
	defer target.Close()
	done := make(chan error, 1)
	go func() { done <- onThread(int(target.Fd()), k, fn) }()
	return <-done
}

// onThread enters the namespace open at fd on the calling goroutine's
// own thread, runs fn, and goes back to the thread's namespace. A thread
// that cannot go back stays locked to the goroutine and ends with it.
func onThread(fd int, k Kind, fn func() error) error {
	runtime.LockOSThread()
	self, err := os.Open(fmt.Sprintf("/proc/thread-self/ns/%s", k.Name))
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer self.Close()
	if err := unix.Setns(fd, int(k.Flag)); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter %s namespace: %w", k.Name, err)
	}
	ferr := fn()
	if err := unix.Setns(int(self.Fd()), int(k.Flag)); err != nil {
		return fmt.Errorf("leave %s namespace: %w", k.Name, err) // the thread ends with the goroutine
	}
	runtime.UnlockOSThread()
	return ferr
}
