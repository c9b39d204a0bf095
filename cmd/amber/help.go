package main

import (
	"strings"
)

// optionHelp is the --help line of each option amber implements, by long
// name, in the order --help lists them.
func optionHelp() [][2]string {
	return [][2]string{
		{"tree", "-t|--tree PID            root of the tree to dump"},
		{"images-dir", "-D|--images-dir DIR      images directory (default .)"},
		{"work-dir", "-W|--work-dir DIR        where relative log and pid files go (default: DIR)"},
		{"log-file", "-o|--log-file FILE       log to FILE (relative to the work directory), not stderr"},
		{"verbosity", "-v[N]|--verbosity[=N]    log level 0..4 (default 2); -v, -vv, ... raise it"},
		{"leave-running", "-R|--leave-running       leave the tree running after dump"},
		{"shell-job", "-j|--shell-job           the tree is a shell job (shares our session)"},
		{"restore-detached", "-d|--restore-detached    do not wait for the restored tree"},
		{"pidfile", "--pidfile FILE           write the restored root's PID to FILE (created exclusively)"},
		{"tcp-established", "--tcp-established        dump and restore established TCP connections (TCP repair mode)"},
		{"tcp-close", "--tcp-close              dump TCP connections without their state; restore them closed"},
		{"tcp-skip-in-flight", "--tcp-skip-in-flight     leave out connections waiting to be accepted (--skip-in-flight too)"},
		{"file-locks", "-l|--file-locks          dump and restore file locks (flock, POSIX, OFD)"},
		{"timeout", "--timeout N              give up on a task that does not stop or answer in N seconds (default 10)"},
		{"pre-dump-mode", "--pre-dump-mode MODE     accepted: splice or read"},
		{"ghost-limit", "--ghost-limit SIZE       dump unlinked open files up to SIZE bytes (K, M, G; default 1M)"},
		{"ghost-fiemap", "--[no-]ghost-fiemap     accepted (holes of unlinked files are found with SEEK_DATA/SEEK_HOLE)"},
		{"force-irmap", "--force-irmap            accepted (inotify watches are named from their file handles)"},
		{"irmap-scan-path", "--irmap-scan-path DIR    accepted (as --force-irmap)"},
		{"skip-file-check", "--skip-file-check        restore files whose size or mtime changed since the dump (amber's)"},
		{"trust-images", "--trust-images           restore images that users other than root and you can write (amber's)"},
		{"feature", "--feature NAME           check one feature (CRIU's names or amber's)"},
		{"rounds", "--rounds N               rounds per workload, best kept (default 3)"},
		{"plot", "--plot FILE.svg          plot restore time against memory size"},
		{"size", "--size MIB               bench: memory of the migration workloads (default 256)"},
		{"prev-images-dir", "--prev-images-dir DIR    the images of the dump before (relative to -D): the parent link"},
		{"track-mem", "--track-mem              track written pages: the next dump on top copies only those"},
		{"page-server", "--page-server            send the pages to the page server at --address --port"},
		{"address", "--address ADDR           the page server's address (page-server: listen there, default all)"},
		{"port", "--port PORT              the page server's TCP port"},
		{"status-fd", "--status-fd FD           page-server, receive, lazy-pages, dump --lazy-pages: write a zero byte to FD once listening"},
		{"to", "--to HOST:PORT           migrate: the destination's amber receive"},
		{"max-iters", "--max-iters N            migrate: at most N pre-dumps (default 8; 0: none)"},
		{"lazy", "--lazy                   migrate: resume on the destination first, private anonymous memory fetched after"},
		{"keep-images", "--keep-images            receive: keep the images received"},
		{"manage-cgroups", "--manage-cgroups[=MODE]  cgroups on restore: soft (default), full, strict, none, props; ignore: none dumped"},
		{"cgroup-root", "--cgroup-root [CTL:]/P  restore the tree's cgroups under /P (of controller CTL only)"},
		{"empty-ns", "--empty-ns net           leave the network namespace to the container engine (not dumped; new and empty on restore)"},
		{"freeze-cgroup", "--freeze-cgroup DIR      freeze the tree with its freezer cgroup DIR while seizing it"},
		{"cgroup-yard", "--cgroup-yard DIR        use the hierarchies mounted in DIR (cpu,cpuacct, systemd, unified) instead of mounting them"},
		{"lazy-pages", "--lazy-pages             restore: leave private anonymous memory to amber lazy-pages;\n" +
			"                         dump: leave it out of the images, serve it on --address --port\n" +
			"                         (with --page-server: the rest to the page server, then served there)"},
		{"no-default-config", "--no-default-config      accepted (amber reads no configuration files)"},
		{"root", "-r|--root DIR            restore: the root of the tree's mount namespace (dump: accepted)"},
		{"external", "--external mnt[K]:V      dump: mount at K is external, key V; restore: bind V at key K's mount; net[INO]:K: netns left out, joined by --inherit-fd fd[N]:K; restore: veth[IF]:OUT[@BR]: veth IF's outside end OUT (in bridge BR)"},
		{"ext-mount-map", "-M|--ext-mount-map K:V   --external mnt[K]:V (CRIU's older spelling; auto is not supported)"},
		{"inherit-fd", "--inherit-fd fd[N]:KEY   restore: amber's fd N in place of file KEY (pipe:[INO], socket:[INO], tmp/log)"},
		{"network-lock", "--network-lock METHOD    dump: hold the tree's TCP connections (or its whole network namespace) with iptables (default), nftables or skip until the restore lifts it"},
		{"join-ns", "-J|--join-ns net:PATH    restore: the tree joins the network namespace at PATH (or net:PID, PID's) instead of a new one"},
		{"link-remap", "--link-remap             dump: a file removed from its path but linked elsewhere is kept by a new hard link link_remap.N beside it"},
	}
}

// verbHelp is what `amber VERB --help` prints: the synopsis, what the
// verb does, and the options it takes.
type verbHelp struct {
	synopsis, what string
	options        []string
}

// verbHelps lists the help of each implemented verb.
func verbHelps() map[string]verbHelp {
	common := []string{"log-file", "verbosity", "work-dir", "no-default-config"}
	return map[string]verbHelp{
		"dump": {"amber dump -t PID [-D DIR] [options]",
			"Checkpoint the process tree rooted at PID into DIR, then kill it (unless -R).\n" +
				"Images of an earlier dump in DIR are removed first.",
			append([]string{"tree", "images-dir", "leave-running", "shell-job", "tcp-established", "tcp-close", "tcp-skip-in-flight",
				"file-locks", "ghost-limit", "timeout", "pre-dump-mode", "prev-images-dir", "track-mem",
				"page-server", "address", "port", "root", "external", "manage-cgroups", "freeze-cgroup", "empty-ns", "ghost-fiemap",
				"cgroup-yard", "network-lock",
				"force-irmap", "irmap-scan-path", "lazy-pages", "status-fd", "link-remap"}, common...)},
		"pre-dump": {"amber pre-dump -t PID [-D DIR] [--prev-images-dir ../PREV] [options]",
			"Copy the memory of the tree rooted at PID into DIR while it runs on (a short\n" +
				"freeze), and track the pages it writes: a later `amber dump --prev-images-dir\n" +
				"../DIR --track-mem` then writes only those.",
			append([]string{"tree", "images-dir", "prev-images-dir", "track-mem", "timeout",
				"page-server", "address", "port"}, common...)},
		"page-server": {"amber page-server [-D DIR] [--address ADDR] --port PORT [options]",
			"Receive the pages of one dump or pre-dump sent with --page-server (CRIU's\n" +
				"protocol: from amber or CRIU) and write its pagemap and pages images into\n" +
				"DIR; exit once the dump ends its session. With --prev-images-dir, DIR is\n" +
				"linked to the images before, to which the dump may leave pages.",
			append([]string{"images-dir", "address", "port", "prev-images-dir", "status-fd"}, common...)},
		"migrate": {"amber migrate -t PID --to HOST:PORT [--max-iters N] [--lazy] [options]",
			"Move the tree rooted at PID to `amber receive` at HOST:PORT: pre-dump it while\n" +
				"it runs until the pages written between two stop shrinking (at most N, default\n" +
				"8; 0 sends everything frozen), then freeze it, send the rest and every other\n" +
				"image; the destination restores it, resumes it before its memory is in and\n" +
				"fills that from the images, and the tree here is killed once every page is\n" +
				"in (held). On one host a tree that is not the init of a pid namespace of its\n" +
				"own is killed first, then restored whole (its PIDs are needed). Prints the\n" +
				"handover, the pages of each round and the downtime. On failure the tree runs\n" +
				"here.\n" +
				"With --lazy the freeze leaves private anonymous memory here: the destination\n" +
				"resumes the tree at once and fetches those pages on fault and in the\n" +
				"background from the tree kept frozen here, killed once every page is in\n" +
				"(on one host the tree must be the init of a pid namespace of its own).",
			append([]string{"tree", "to", "max-iters", "lazy", "shell-job", "tcp-established", "tcp-close", "file-locks",
				"ghost-limit", "timeout"}, common...)},
		"receive": {"amber receive [-D DIR] [--address ADDR] --port PORT [options]",
			"Take one `amber migrate` on PORT: its images go into directories of DIR\n" +
				"(pre-1, ..., final), then the tree is restored and runs here; the images are\n" +
				"removed unless --keep-images. On failure nothing is left running here.",
			append([]string{"images-dir", "address", "port", "keep-images", "pidfile", "status-fd", "timeout",
				"trust-images", "skip-file-check"}, common...)},
		"restore": {"amber restore [-D DIR] [-d] [--pidfile FILE] [options]",
			"Restore the tree dumped in DIR. Images that a user other than root and\n" +
				"you can write (DIR, a directory above it, an image) are refused.",
			append([]string{"images-dir", "restore-detached", "pidfile", "shell-job", "tcp-established", "tcp-close",
				"file-locks", "skip-file-check", "trust-images", "root", "external", "manage-cgroups", "cgroup-root", "empty-ns", "lazy-pages", "inherit-fd",
				"cgroup-yard", "network-lock", "join-ns"}, common...)},
		"lazy-pages": {"amber lazy-pages [-D DIR] [--page-server --address ADDR --port PORT] [options]",
			"Serve the page faults of one `amber restore --lazy-pages` of DIR through\n" +
				"userfaultfd, from the pages images, on the socket lazy-pages.socket in DIR;\n" +
				"copy the rest in the background once the restore is over, and exit when\n" +
				"every page is in. With --page-server, the pages a `dump --lazy-pages` left\n" +
				"out come from it at ADDR:PORT; if it goes away, what never came is poisoned\n" +
				"(a process touching it gets SIGBUS) and lazy-pages fails.",
			append([]string{"images-dir", "status-fd", "page-server", "address", "port", "timeout"}, common...)},
		"check": {"amber check [--feature NAME]",
			"Report the kernel features amber needs.",
			append([]string{"feature"}, common...)},
		"show": {"amber show DIR|FILE",
			"Print an image, or every image of a directory, as JSON (like crit show).\n" +
				"Raw images (pages-*.img) are shown by their size.",
			nil},
		"check-images": {"amber check-images [-D DIR]",
			"Check DIR against the manifest its dump wrote, as restore does first.",
			append([]string{"images-dir"}, common...)},
		"swrk": {"amber swrk FD",
			"Serve one session of CRIU's RPC on FD, a SOCK_SEQPACKET socket, as\n" +
				"`criu swrk` does for runc and go-criu: VERSION, CHECK, FEATURE_CHECK,\n" +
				"DUMP and RESTORE, with NOTIFY round trips at CRIU's action-script points.",
			nil},
		"bench": {"amber bench [WORKLOAD...] [--rounds N] [--plot FILE.svg] [--size MIB]",
			"Time dump and restore of built-in workloads against a native floor\n" +
				"(workloads: mem512 mem1g vma10k filemap4k threads100 tree50), and, when\n" +
				"named, migrations over loopback of a process writing 8 or 64 MiB/s\n" +
				"(migrate8 migrate64): downtime, all-in and total time, dump+restore, pre-copy\n" +
				"and lazy (one mode: migrate64/lazy, migrate8/pre-copy, migrate8/dump+restore);\n" +
				"lazyN (lazy1g, lazy512): restore --lazy-pages with amber lazy-pages beside a\n" +
				"plain restore; pageserverN: a dump to page-server on loopback beside one to\n" +
				"disk. With AMBER_CRIU=/path/to/criu, these two run CRIU beside amber.",
			[]string{"rounds", "plot", "size"}},
	}
}

// helpText is what --help prints: the help of verb, or the whole usage
// without one (or for a verb amber does not implement).
func helpText(verb string) string {
	h, ok := verbHelps()[verb]
	if !ok {
		return usage()
	}
	var b strings.Builder
	b.WriteString("Usage: " + h.synopsis + "\n\n" + h.what + "\n")
	if len(h.options) > 0 {
		b.WriteString("\nOptions:\n")
		lines := map[string]string{}
		for _, l := range optionHelp() {
			lines[l[0]] = l[1]
		}
		for _, name := range h.options {
			b.WriteString("  " + lines[name] + "\n")
		}
	}
	return b.String()
}

// usage is what --help prints without a verb.
func usage() string {
	var b strings.Builder
	b.WriteString(`Usage:
  amber dump -t PID [-D DIR] [options]
  amber restore [-D DIR] [-d] [--pidfile FILE] [options]
  amber page-server [-D DIR] [--address ADDR] --port PORT
  amber lazy-pages [-D DIR]
  amber check [--feature NAME]
  amber show DIR|FILE
  amber check-images [-D DIR]
  amber swrk FD
  amber bench [WORKLOAD...] [--rounds N] [--plot FILE.svg]
  amber --version | --help
  amber COMMAND --help

Commands:
  dump       checkpoint the process tree rooted at PID into DIR
  restore    restore the tree dumped in DIR
  page-server  receive the pages of a dump --page-server into DIR
  lazy-pages   serve the memory of a restore --lazy-pages from DIR
  check      report the kernel features amber needs
  show       print images as JSON, like crit show
  check-images  check DIR against the manifest its dump wrote, as restore does first
  swrk       serve CRIU's RPC on the socket FD (how runc and go-criu call criu)
  bench      time dump and restore of built-in workloads against a native floor
             (workloads: mem512 mem1g vma10k filemap4k threads100 tree50)

Options (CRIU's; before or after the command):
`)
	for _, l := range optionHelp() {
		b.WriteString("  " + l[1] + "\n")
	}
	return b.String()
}
