// Package tarfs archives a directory tree as a tar stream and unpacks
// one, in amber's own process, the way CRIU has tar(1) save and restore
// the contents of a tmpfs (tar --create --one-file-system --check-links
// --preserve-permissions --sparse --numeric-owner, then tar --extract):
// without a process to start per mount, which cost more than the rest of
// a container's mounts together.
//
// The stream is what GNU tar writes with --format=posix: names relative
// to the root ("./", "./dir/", "./dir/file"), numeric owners only, the
// permission bits with set-id and sticky bits, times to the nanosecond
// in PAX records (a restore checks the files a tree has open against
// their modification times), hard links as links to the first name,
// device nodes and FIFOs, and sparse files in GNU's PAX sparse format
// 1.0. Sockets are left out and extended attributes are not kept, as
// CRIU's tar leaves them. GNU tar reads what Create writes, and Extract
// reads what GNU tar writes (in its POSIX or its GNU format), so CRIU's
// images and amber's restore with either tool.
//
// Both directions work from a descriptor of the tree's root and reach
// every file relative to it, never through a symbolic link, and never
// outside it: the tree may be a detached copy of a mount of another
// mount namespace, and an archive cannot write beyond its root.
package tarfs
