// Package mounts dumps and restores the mount namespace of a tree, as
// CRIU's mount.c and filesystems.c do, into the same images: one
// MntEntry per mount in mountpoints-ID.img (ID the namespace's id in
// ids-PID.img) and the contents of each tmpfs in
// tmpfs-dev-DEV.tar.gz.img, a gzipped tar as CRIU's (made and unpacked
// in-process by tarfs as tar(1) does with CRIU's options, so either
// tool reads the other's).
//
// A dump reads /proc/PID/mountinfo of the tree's root: the paths there
// are relative to the root of the task, the root of the namespace a
// container is pivot_root'ed into. Every mount must be one a restore
// can make again from inside the namespace: the root mount (given on
// restore by --root), a filesystem mounted afresh (proc, sysfs, tmpfs,
// devpts, mqueue, cgroup, ...), a bind of a part of another mount of
// the namespace, or an external mount named by --external
// mnt[MOUNTPOINT]:KEY, whose source the restore's --external
// mnt[KEY]:PATH gives.
//
// A restore plans the mounts from the images in plain Go (Plan: which
// mount, from what, in which order, with which flags), then runs the
// plan on a thread of amber's that has entered the new mount namespace
// of the restored root: it binds --root, makes every mount under it,
// fills tmpfs mounts, and pivots the namespace's root there, which
// moves the root task (whose root is the old one) along.
//
// A task of the tree that unshared a mount namespace of its own has it
// dumped too, from its own mountinfo, in mountpoints-ID.img of that
// namespace's id. A restore makes it from a copy of its parent's
// namespace (RestoreCopy): the copied mounts the parent's images share
// with the dumped ones stay, the others go, the missing ones are made.
// Once a namespace's mounts are made, private, their peer groups and
// masters are given back across the tree's namespaces (Groups).
package mounts
