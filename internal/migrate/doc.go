// Package migrate moves a running process tree to another amber over
// TCP (amber migrate on the source, amber receive on the destination):
// memory copied while the tree runs (pre-copy: pre-dumps that track the
// pages written since the one before, each smaller than the last), then
// one short freeze in which the last written pages and every other image
// go over, and the destination restores the tree.
//
// # Wire protocol
//
// The destination listens on one TCP port. The source's first connection
// is the control channel: one JSON object per line (Msg), some followed
// by raw bytes (a file's contents, Msg.Size of them). Every request the
// source sends gets one answer, an "ok" message or an "error" one; the
// images of a file batch are answered once, after the batch.
//
//	source                                  destination
//	hello {version, boot_id, dump flags} ->
//	                                   <-  ok {version, boot_id, dir}
//	pages {dir: "pre-1"}               ->  (creates DIR/pre-1)
//	                                   <-  ok
//	second connection: CRIU's page-server protocol, one session, the
//	pages of a (pre-)dump; the destination writes them into DIR/pre-1
//	                                   <-  ok {pages}
//	pages {dir: "pre-2", parent: "pre-1"} ... (as many as converge)
//	pages {dir: "final", parent: "pre-N"} ... (the tree is frozen)
//	file {name, size} + bytes, ...     ->  (the other images, into DIR/final)
//	end-files                          ->
//	                                   <-  ok
//
// then, held (held.go: between two hosts, or on one for a tree that is
// the init of a pid namespace of its own):
//
//	restore {lazy, local}              ->  (restores DIR/final, tasks held,
//	                                        memory left to a lazy-pages daemon
//	                                        reading the images received)
//	                                   <-  ok {pid}
//	commit                             ->  (the tasks run)
//	                                   <-  ok {resumed_at, restore_ns, pid}
//	                                   <-  ok {all_in_ns} (the source then
//	                                        kills its tree)
//
// or killed first (one host, any other tree), once the source killed its
// tree:
//
//	restore {same_host}                ->  (restores DIR/final)
//	                                   <-  ok {resumed_at, restore_ns, pid}
//	done                               ->  (removes DIR/pre-*, DIR/final)
//
// A failed restore on one host answers error and keeps the images until
// the source, which restores the tree from them, says done (or keep).
//
// Each pages request makes a directory of the chain, linked to its
// parent, so that DIR/final is a complete images directory a plain
// amber restore could use; the page connection comes from the control
// channel's host. A failure answers "error" and the destination removes
// every directory it made; so does a control channel that closes before
// the restore.
//
// # Handover
//
// The source is killed only once the destination has the whole tree. In
// the held handover (the package's default) the destination restores
// every task and, before any runs (restore's post-restore point),
// answers ok; the source commits, the destination's tasks run while a
// lazy-pages daemon fills their memory from the images, and once every
// page is in the destination says so and the source kills its frozen
// tree. Any failure before that answer thaws the source's tree. The
// destination kills its copy on a failure before the commit, when the
// source goes away or the connection breaks before every page is in
// (the source thawed), and, through a guard process (guard.go), when its
// own amber dies with pages missing. Only the answer that every page is
// in lost in a connection broken right after it leaves two copies
// running, which the protocol prefers to none.
//
// On one host the held restore makes the tree's pid namespace anew, with
// the same PIDs inside while the frozen source holds them outside: the
// tree must be the init of a pid namespace of its own. Any other tree
// needs its very PIDs, which the frozen source holds, so the order is
// reversed, as in CRIU's local migration: once the destination has every
// image, the source kills its tree and waits until its PIDs are free
// (its parent reaped it), then asks for the restore. If that restore
// fails, or the destination amber dies, the source restores the tree
// itself from the destination's images (the same file system), then
// removes them, unless the destination's tree runs already. If the
// source amber dies after it killed the tree, the destination, finding
// the tree gone, restores it on its own. Only the loss of both ambers at
// once loses the tree.
//
// With --lazy (lazy.go) the handover is the held one, but the pages of
// private anonymous memory stay in the source's frozen tree, and the
// destination's daemon fetches them over one more connection.
package migrate
