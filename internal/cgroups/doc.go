// Package cgroups dumps and restores the cgroups of a tree, as CRIU's
// cgroup.c does, into and from CRIU's cgroup.img, and freezes a tree
// with its freezer cgroup.
//
// Dump: each process's membership (/proc/PID/cgroup) is a set, one
// path per hierarchy; equal sets share an id, which the process's core
// image names (TaskCoreEntry.cg_set). amber's own set is the
// inventory's root_cg_set and is not written: a process in it is
// restored in the restorer's cgroups. For every hierarchy where a set
// differs from amber's, the cgroup directories from the process's path
// down are dumped with the properties CRIU saves (props.go). A
// hierarchy where the tree shares amber's cgroup is not walked (CRIU
// walks it too, which for a tree in a root cgroup is the whole host's
// hierarchy).
//
// Restore: the images are read into a Plan (plan.go), pure Go that the
// unit tests check: which directories to create, which properties to
// write in them and in what order, which cgroup.procs files a process
// of each set is written to. cg_root (--cgroup-root) replaces the root
// of the dumped paths per hierarchy, as CRIU's does; the mode
// (--manage-cgroups) says what happens to directories that exist
// already. Each process is moved into its cgroups right after it is
// created, before it has threads or children and long before it runs;
// the properties that could hinder the restore (limits) are written
// once every task is restored, before they are released.
//
// Hierarchies are reached through mounts amber makes for itself
// (fsopen and fsmount, detached from any mount tree), so a hierarchy
// mounted nowhere in amber's mount namespace, or a read-only mount of
// /sys/fs/cgroup, still works. With a yard (--cgroup-yard), the
// caller's mounts in it are used instead (yard.go).
package cgroups
