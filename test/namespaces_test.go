package test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	criucore "github.com/checkpoint-restore/go-criu/v8/crit/images/criu-core"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/utsns"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/image"
)

// TestNamespacesUTSIPC dumps ns_uts_ipc, started in UTS and IPC
// namespaces of its own with names and IPC settings of its own, and
// restores it: it must come back in new namespaces (not amber's, where
// it would find the machine's names), with its names and settings, and
// the machine's own names untouched.
func TestNamespacesUTSIPC(t *testing.T) {
	p, _ := lookupProgram("ns_uts_ipc")
	var host unix.Utsname
	if err := unix.Uname(&host); err != nil {
		t.Fatal(err)
	}
	c := startProgram(t, p)
	c.mustDump()
	c.mustRestoreDetached()
	for _, kind := range []string{"uts", "ipc"} {
		if nsInode(t, c.pid, kind) == nsInode(t, os.Getpid(), kind) {
			t.Errorf("restored pid %d is in the test's %s namespace, want one of its own", c.pid, kind)
		}
	}
	var after unix.Utsname
	if err := unix.Uname(&after); err != nil {
		t.Fatal(err)
	}
	if after != host {
		t.Errorf("the machine's names changed: %q %q, were %q %q", unix.ByteSliceToString(after.Nodename[:]),
			unix.ByteSliceToString(after.Domainname[:]), unix.ByteSliceToString(host.Nodename[:]), unix.ByteSliceToString(host.Domainname[:]))
	}
	c.mustPass()
}

// nsInode is the inode of pid's namespace of the kind.
func nsInode(t *testing.T, pid int, kind string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(fmt.Sprintf("/proc/%d/ns/%s", pid, kind), &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// TestNamespacesPID dumps ns_pid, the init of a pid namespace of its own
// with a child and a grandchild, and restores it: it must come back as
// pid 1 of a new pid namespace, under a PID of the host's that the
// pidfile reports, its descendants with their pids inside.
func TestNamespacesPID(t *testing.T) {
	p, _ := lookupProgram("ns_pid")
	c := startProgram(t, p)
	c.mustDumpRestorePidNamespace()
	c.mustPass()
}

// TestNamespacesPIDPrograms runs programs of the table as the init of a
// pid namespace of their own: their trees, shared files and memory,
// zombies and process groups come back inside a new one.
func TestNamespacesPIDPrograms(t *testing.T) {
	for _, name := range []string{"fork_cow", "tree50", "zombie_pgrp", "pgrp_session", "session_leaders", "memfd_fork", "clone_files", "sk_unix_tree",
		"threads_tls", "timers00", "timer_thread", "sigpending00", "file_fown", "shm_anon_fork", "shm_anon_priv", "child_subreaper", "tcp_closed00",
		"pty00", "pty01", "tty_ctty"} {
		t.Run(name, func(t *testing.T) {
			c := startNamespaced(t, name, unix.CLONE_NEWPID)
			c.mustDumpRestorePidNamespace()
			c.mustPass()
		})
	}
}

// TestNamespacesUserPrograms runs programs of the table as root of a
// user namespace of their own, a rootless container's (and init of a pid
// namespace), in a directory of theirs: the restore gives the files they
// made their owners (a memfd, unlinked files and directories, socket
// files) and their sockets their buffer sizes, which a task there may
// not (SO_SNDBUFFORCE needs CAP_NET_ADMIN in the host's namespace, the
// files it makes are amber's ids, which the namespace does not map):
// amber makes those calls itself (plan.Builder.Privileged). Their ptys
// come from the stub (giveToStub), their ping sockets need the
// namespace's group (compel.Stub.SetGroup).
func TestNamespacesUserPrograms(t *testing.T) {
	for _, name := range []string{"memfd00", "unlink_fstat00", "cwd_removed", "ghost_holes", "ghost_fifo", "sk_unix_ghost",
		"sk_unix_pair", "sk_unix_scm", "sk_unix_listen", "sock_filter", "tcp_buffers00", "tcp_half_closed00", "fifo00", "pipe_size", "file_fown", "pty00", "pty01", "sk_raw_ping"} {
		t.Run(name, func(t *testing.T) {
			p, ok := lookupProgram(name)
			if !ok {
				t.Fatalf("no program %q", name)
			}
			p.cloneflags |= unix.CLONE_NEWPID
			if strings.HasPrefix(name, "tcp_") || name == "sk_raw_ping" {
				// A container's sockets are in its own network
				// namespace, where its root may repair connections and
				// let its group 0 make ping sockets.
				p.cloneflags |= unix.CLONE_NEWNET
			}
			p.userns, p.work = true, true
			c := startProgram(t, p)
			c.mustDumpRestorePidNamespace()
			c.mustPass()
		})
	}
}

// TestNamespacesIPCPrograms runs programs of the table as the init of
// pid and IPC namespaces of their own: their SysV objects are then the
// namespace's, dumped whole and made again in a new one.
func TestNamespacesIPCPrograms(t *testing.T) {
	for _, name := range []string{"sysv_shm00", "sysv_shm_lock", "sysv_shm_huge"} {
		t.Run(name, func(t *testing.T) {
			c := startNamespaced(t, name, unix.CLONE_NEWPID|unix.CLONE_NEWIPC)
			c.mustDumpRestorePidNamespace()
			c.mustPass()
		})
	}
}

// mustDumpRestorePidNamespace dumps the program, the init of a pid
// namespace of its own, and restores it detached: it must come back as
// pid 1 of a new pid namespace, under the PID of the host's that the
// pidfile names, which becomes c.pid.
func (c *zcase) mustDumpRestorePidNamespace() {
	t := c.t
	t.Helper()
	tree := descendants(c.pid)
	if r := c.dump(c.prog.dumpFlags...); r.err != nil {
		t.Fatalf("dump failed: %v", r)
	}
	c.reapDumped(tree)
	pidfile := c.pidfile()
	if r := c.restoreDetached(pidfile); r.err != nil {
		t.Fatalf("restore failed: %v", r)
	}
	c.requireNewPidNamespace(pidfile)
}

// requireNewPidNamespace requires that the restored program, whose PID
// in amber's namespace the pidfile names (c.pid from then on), is pid 1
// of a new pid namespace.
func (c *zcase) requireNewPidNamespace(pidfile string) {
	t := c.t
	t.Helper()
	pid, err := readPidfile(pidfile)
	if err != nil {
		t.Fatal(err)
	}
	c.pid = pid
	st, err := readStatusField(pid, "NSpid")
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("%d\t1", pid); st != want {
		t.Fatalf("restored root: NSpid %q, want %q (pid 1 of a pid namespace of its own)", st, want)
	}
	if nsInode(t, pid, "pid") == nsInode(t, os.Getpid(), "pid") {
		t.Fatalf("restored pid %d is in the test's pid namespace", pid)
	}
}

// readStatusField is the value of a field of /proc/PID/status.
func readStatusField(pid int, name string) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			return strings.TrimSpace(v), nil
		}
	}
	return "", fmt.Errorf("/proc/%d/status has no %s", pid, name)
}

// TestNamespacesPIDSessionOutside: the init of a pid namespace whose
// session is led from outside it (started without setsid) cannot be
// restored with its session: the dump refuses it, naming it, and it runs
// on.
func TestNamespacesPIDSessionOutside(t *testing.T) {
	p, _ := lookupProgram("ns_pid")
	p.keepSession = true
	c := startProgram(t, p)
	r := c.dump()
	requireFailure(t, r, "led from outside its pid namespace")
	requireFailureNamingPid(t, r, c.pid)
	c.mustPass()
}

// TestNamespacesPIDPreDump pre-dumps predump_writer, the init of a pid
// namespace of its own, dumps it on top and restores the chain: the
// images of both levels name it by its pid inside (1), and the dump
// leaves its cold pages to the pre-dump's.
func TestNamespacesPIDPreDump(t *testing.T) {
	c := startNamespaced(t, "predump_writer", unix.CLONE_NEWPID)
	c.mustPreDump("pre1", "")
	tree := descendants(c.pid)
	if r := c.dump("--prev-images-dir", "../pre1", "--track-mem"); r.err != nil {
		t.Fatalf("dump failed: %v", r)
	}
	c.reapDumped(tree)
	c.requireIncremental("images")
	pidfile := c.pidfile()
	if r := c.restoreDetached(pidfile); r.err != nil {
		t.Fatalf("restore failed: %v", r)
	}
	pid, err := readPidfile(pidfile)
	if err != nil {
		t.Fatal(err)
	}
	c.pid = pid
	c.mustPass()
}

// imagePid is the program's PID in its images: 1 for the init of a pid
// namespace of its own.
func (c *zcase) imagePid() int {
	if c.prog.cloneflags&unix.CLONE_NEWPID != 0 {
		return 1
	}
	return c.pid
}

// TestNamespacesBadUTSImage restores ns_uts_ipc from images whose
// utsns image holds a host name too long for a UTS namespace: the
// restore fails naming the image, and leaves no process behind.
func TestNamespacesBadUTSImage(t *testing.T) {
	p, _ := lookupProgram("ns_uts_ipc")
	c := startProgram(t, p)
	c.mustDump()
	c.dropManifest()
	names, err := filepath.Glob(filepath.Join(c.images, "utsns-*.img"))
	if err != nil || len(names) != 1 {
		t.Fatalf("utsns images: %v, %v; want one", names, err)
	}
	dir, err := image.OpenDir(c.images)
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	long := &utsns.UtsnsEntry{Nodename: proto.String(strings.Repeat("h", 100)), Domainname: proto.String("d")}
	if err := image.WriteFile(dir.File(filepath.Base(names[0])), image.Utsns, long); err != nil {
		t.Fatal(err)
	}
	r := c.restoreDetached(c.pidfile())
	requireFailure(t, r, filepath.Base(names[0]))
	requireFailure(t, r, "longer than 64 bytes")
	requireNothingLeft(t, "a restore refused for its utsns image")
}

// TestNamespacesInterop dumps ns_uts_ipc and ns_pid (the latter in new
// UTS and IPC namespaces too) with CRIU and restores them with amber,
// then the other way round: each program checks its names, settings and
// pids.
func TestNamespacesInterop(t *testing.T) {
	for _, tc := range []struct {
		name  string
		flags uintptr
	}{
		{"ns_uts_ipc", unix.CLONE_NEWUTS | unix.CLONE_NEWIPC},
		{"ns_pid", unix.CLONE_NEWPID | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC},
	} {
		t.Run("criu_dumps/"+tc.name, func(t *testing.T) {
			bin := criuBin(t)
			c := startNamespaced(t, tc.name, tc.flags)
			tree := descendants(c.pid)
			if r := c.criu(bin, c.dumpArgs()...); r.err != nil {
				t.Fatalf("criu dump failed: %v", criuLog(r, c.images))
			}
			c.reapDumped(tree)
			pidfile := c.pidfile()
			if r := c.restoreDetached(pidfile); r.err != nil {
				t.Fatalf("restore failed: %v", r)
			}
			c.requireRestoredIn(pidfile, tc.flags)
			c.mustPass()
		})
		t.Run("amber_dumps/"+tc.name, func(t *testing.T) {
			bin := criuBin(t)
			c := startNamespaced(t, tc.name, tc.flags)
			tree := descendants(c.pid)
			if r := c.dump(); r.err != nil {
				t.Fatalf("dump failed: %v", r)
			}
			c.reapDumped(tree)
			pidfile := c.pidfile()
			if r := c.criu(bin, c.restoreArgs(pidfile, "-d")...); r.err != nil {
				t.Fatalf("criu restore failed: %v", r)
			}
			c.requireRestoredIn(pidfile, tc.flags)
			c.mustPass()
		})
	}
}

// startNamespaced starts program name in the namespaces of flags.
func startNamespaced(t *testing.T, name string, flags uintptr) *zcase {
	p, ok := lookupProgram(name)
	if !ok {
		t.Fatalf("no program %q", name)
	}
	p.cloneflags = flags
	return startProgram(t, p)
}

// requireRestoredIn checks the restored program's PID (the pidfile's)
// and that it is in new namespaces of flags' kinds.
func (c *zcase) requireRestoredIn(pidfile string, flags uintptr) {
	c.t.Helper()
	if flags&unix.CLONE_NEWPID != 0 {
		c.requireNewPidNamespace(pidfile)
	} else {
		c.checkRestoredPid(pidfile)
	}
	for _, kind := range []string{"uts", "ipc"} {
		if nsInode(c.t, c.pid, kind) == nsInode(c.t, os.Getpid(), kind) {
			c.t.Errorf("restored pid %d is in the test's %s namespace", c.pid, kind)
		}
	}
}

// TestNamespacesNet dumps netns_lo, in a network namespace of its own
// with its loopback up, and restores it: it must come back in a new
// one, its loopback up (netdev-ID.img), and crit must decode the
// images.
func TestNamespacesNet(t *testing.T) {
	p, _ := lookupProgram("netns_lo")
	c := startProgram(t, p)
	c.mustDump()
	for _, img := range []string{"netdev", "netns"} {
		critDecodes(t, filepath.Join(c.images, fmt.Sprintf("%s-%d.img", img, c.netnsID())))
	}
	c.mustRestoreDetached()
	if nsInode(t, c.pid, "net") == nsInode(t, os.Getpid(), "net") {
		t.Errorf("restored pid %d is in the test's network namespace, want one of its own", c.pid)
	}
	c.mustPass()
}

// TestNamespacesNetSockets runs socket programs of the table in a
// network namespace of their own: sock_diag must be asked there (the
// names of abstract sockets are the namespace's own), and they come back
// in a new one with their sockets. The half-closed TCP connections of
// tcp_half_closed00 get the segments of their peers that the restore
// makes again in that namespace, not in amber's. (tcp_close_wait00 is
// not for here: its connections' peers, closed by the program, are
// orphans of the dumped namespace that die with it, and the restored
// connections' acknowledgement of their peers' FIN is answered with a
// reset.) netns_sub_sk has tasks in a second network namespace, each
// holding sockets of the other one: each namespace is dumped with its
// sockets, and every socket is made again in its own namespace,
// whichever task holds it.
func TestNamespacesNetSockets(t *testing.T) {
	for _, name := range []string{"sk_unix_pair", "sk_unix_listen", "sk_unix_abstract", "sk_unix_scm", "sk_unix_tree", "sk_unix_shutdown",
		"tcp_half_closed00", "tcp_closed00", "netns_sub_sk"} {
		t.Run(name, func(t *testing.T) {
			c := startNamespaced(t, name, unix.CLONE_NEWNET)
			c.mustDump()
			c.mustRestoreDetached()
			if nsInode(t, c.pid, "net") == nsInode(t, os.Getpid(), "net") {
				t.Errorf("restored pid %d is in the test's network namespace, want one of its own", c.pid)
			}
			c.mustPass()
		})
	}
}

// TestNamespacesNetEmpty dumps netns_lo with --empty-ns net: nothing
// of its network namespace is dumped, a restore without the option is
// refused naming the image it lacks and leaves nothing running, and
// one with it puts the program in a new namespace as it comes.
func TestNamespacesNetEmpty(t *testing.T) {
	p, _ := lookupProgram("netns_lo")
	c := startProgram(t, p)
	c.mustDump("--empty-ns", "net")
	if m, _ := filepath.Glob(filepath.Join(c.images, "netdev-*.img")); len(m) > 0 {
		t.Errorf("--empty-ns net dumped %v", m)
	}
	r := c.restoreDetached(c.pidfile())
	if r.err == nil || !strings.Contains(r.stderr, fmt.Sprintf("netdev-%d.img", c.netnsID())) {
		t.Fatalf("restore without --empty-ns net: %v; want a failure naming the missing netdev image", r)
	}
	if alive(c.pid) {
		t.Fatalf("pid %d runs after a failed restore", c.pid)
	}
	if err := os.WriteFile(filepath.Join(c.dir, "emptyns"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	pidfile := c.pidfile()
	if r := c.amber(c.prog, c.restoreArgs(pidfile, "-d", "--empty-ns", "net")...); r.err != nil {
		t.Fatalf("restore failed: %v", r)
	}
	c.checkRestoredPid(pidfile)
	c.mustPass()
}

// netnsID is the id of the dumped root's network namespace.
func (c *zcase) netnsID() uint32 {
	c.t.Helper()
	dir, err := image.OpenDir(c.images)
	if err != nil {
		c.t.Fatal(err)
	}
	defer dir.Close()
	ids, err := image.ReadOne(dir.IDsPath(c.pid), image.IDs, func() *criucore.TaskKobjIdsEntry { return &criucore.TaskKobjIdsEntry{} })
	if err != nil {
		c.t.Fatal(err)
	}
	return ids.GetNetNsId()
}

// TestNamespaceFilesOwn runs ns_files in network, UTS and IPC namespaces
// of its own: its descriptors of those must point to the new ones the
// restore makes, the one of its parent's network namespace to the
// restorer's, and crit must decode the NS entries of files.img.
func TestNamespaceFilesOwn(t *testing.T) {
	c := startNamespaced(t, "ns_files", unix.CLONE_NEWNET|unix.CLONE_NEWUTS|unix.CLONE_NEWIPC)
	c.mustDump()
	critDecodes(t, filepath.Join(c.images, "files.img"))
	c.mustRestoreDetached()
	if nsInode(t, c.pid, "net") == nsInode(t, os.Getpid(), "net") {
		t.Errorf("restored pid %d is in the test's network namespace, want one of its own", c.pid)
	}
	c.mustPass()
}

// TestNamespacesIPCObjects dumps ipcns_sysv, started in an IPC namespace
// of its own holding shared memory segments (attached, removed while
// attached, attached by nobody), semaphore sets and message queues, and
// restores it in a new one: the program checks every object by its old
// id, with its contents, and its attachments shared with the segments.
// crit must read the images: the semaphores' values and the messages.
func TestNamespacesIPCObjects(t *testing.T) {
	p, _ := lookupProgram("ipcns_sysv")
	c := startProgram(t, p)
	c.mustDump()
	if crit := critCommand(t); crit != nil {
		critShowsIPC(t, crit, c.images)
	}
	c.mustRestoreDetached()
	if nsInode(t, c.pid, "ipc") == nsInode(t, os.Getpid(), "ipc") {
		t.Errorf("restored pid %d is in the test's IPC namespace, want one of its own", c.pid)
	}
	c.mustPass()
}

// TestNamespacesSemUndo dumps sem_undo, which has a SysV semaphore
// undo list, in an IPC namespace of its own: the dump saves the set's
// values, and says in its log that the undo adjustments are not saved
// (CRIU saves none, and says nothing).
func TestNamespacesSemUndo(t *testing.T) {
	p, _ := lookupProgram("sem_undo")
	c := startProgram(t, p)
	c.mustDump()
	log, err := os.ReadFile(filepath.Join(c.images, "dump.log"))
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("pid %d has a SysV semaphore undo list", c.pid); !strings.Contains(string(log), want) {
		t.Errorf("dump.log does not say %q", want)
	}
	c.mustRestoreDetached()
	c.mustPass()
}

// TestNamespacesMqueue dumps ipcns_mqueue, started in an IPC namespace
// of its own holding POSIX message queues, first with --leave-running
// (which must leave every message queued: a dump reads them by taking
// them), then to restore it in a new one, where the program takes every
// message and checks it.
func TestNamespacesMqueue(t *testing.T) {
	p, _ := lookupProgram("ipcns_mqueue")
	c := startProgram(t, p)
	if r := c.dump("--leave-running"); r.err != nil {
		t.Fatalf("dump --leave-running failed: %v", r)
	}
	c.mustDump()
	c.mustRestoreDetached()
	c.mustPass()
}

// critShowsIPC checks with crit show the SysV images of the one IPC
// namespace dumped in dir: 2 semaphore sets valued 0 1 7 32767 2 and 3;
// 2 queues, one empty and one with 4 messages, "hello" first (in the
// order of the objects' indexes, which the kernel chooses).
func critShowsIPC(t *testing.T, crit []string, dir string) {
	t.Helper()
	show := func(glob string) string {
		imgs, err := filepath.Glob(filepath.Join(dir, glob))
		if err != nil || len(imgs) != 1 {
			t.Fatalf("%s in %s: %v (%v)", glob, dir, imgs, err)
		}
		args := append(crit[1:len(crit):len(crit)], "show", imgs[0])
		out, err := exec.Command(crit[0], args...).CombinedOutput()
		if err != nil {
			t.Fatalf("crit show %s: %v\n%s", imgs[0], err, out)
		}
		return string(out)
	}
	var sem struct {
		Entries []struct {
			Extra []uint16 `json:"extra"`
		} `json:"entries"`
	}
	if err := json.Unmarshal([]byte(show("ipcns-sem-*.img")), &sem); err != nil {
		t.Fatal(err)
	}
	var sets []string
	for _, e := range sem.Entries {
		sets = append(sets, fmt.Sprint(e.Extra))
	}
	slices.Sort(sets)
	if fmt.Sprint(sets) != "[[0 1 7 32767 2] [3]]" {
		t.Errorf("crit show ipcns-sem: sets valued %v, want [0 1 7 32767 2] and [3]", sets)
	}
	type queue struct {
		Qnum  int   `json:"qnum"`
		Extra []any `json:"extra"`
	}
	var msg struct {
		Entries []queue `json:"entries"`
	}
	if err := json.Unmarshal([]byte(show("ipcns-msg-*.img")), &msg); err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(msg.Entries, func(a, b queue) int { return a.Qnum - b.Qnum })
	if len(msg.Entries) != 2 || msg.Entries[0].Qnum != 0 || msg.Entries[1].Qnum != 4 || len(msg.Entries[1].Extra) != 8 ||
		strings.TrimSpace(fmt.Sprint(msg.Entries[1].Extra[1])) != "aGVsbG8=" {
		t.Errorf("crit show ipcns-msg: %+v, want 2 queues, one empty, one with 4 messages, \"hello\" (aGVsbG8=) first", msg.Entries)
	}
	if out := show("ipcns-var-*.img"); !strings.Contains(out, `"msg_ctlmax": 9000`) {
		t.Errorf("crit show ipcns-var: no msg_ctlmax 9000 in\n%s", out)
	}
	// crit reads the first segment only: it takes the contents of every
	// segment to follow its entry, which CRIU's images (in_pagemaps)
	// leave in pagemap-shmem and pages images, as amber's do.
	if out := show("ipcns-shm-*.img"); !strings.Contains(out, `"in_pagemaps": true`) {
		t.Errorf("crit show ipcns-shm: no segment with in_pagemaps in\n%s", out)
	}
}

// TestNamespacesBadIPCImage restores ipcns_sysv from images whose
// ipcns-msg image ends inside a message: the restore fails naming the
// image, and leaves no process behind.
func TestNamespacesBadIPCImage(t *testing.T) {
	p, _ := lookupProgram("ipcns_sysv")
	c := startProgram(t, p)
	c.mustDump()
	c.dropManifest()
	names, err := filepath.Glob(filepath.Join(c.images, "ipcns-msg-*.img"))
	if err != nil || len(names) != 1 {
		t.Fatalf("ipcns-msg images: %v, %v; want one", names, err)
	}
	st, err := os.Stat(names[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(names[0], st.Size()-100); err != nil {
		t.Fatal(err)
	}
	r := c.restoreDetached(c.pidfile())
	requireFailure(t, r, filepath.Base(names[0]))
	requireFailure(t, r, "truncated")
	requireNothingLeft(t, "a restore refused for its ipcns-msg image")
}

// TestNamespacesPty dumps ns_pty, a container in pid and mount
// namespaces of its own with a devpts of its own, whose init holds a
// locked pty and whose child leads a session controlled by another pty,
// whose master it alone holds. Restored into new namespaces, the ptys
// must be the container's again (made at its ptmx, with their indexes,
// as its /dev/pts shows them) with their termios, window size, packet
// mode, lock, queued bytes, controlling terminal and foreground group.
func TestNamespacesPty(t *testing.T) {
	p, _ := lookupProgram("ns_pty")
	c := startProgram(t, p)
	tree := descendants(c.pid)
	if r := c.dump("--external", "mnt[/usr]:usr", "--external", "mnt[/ns_pty.out]:out"); r.err != nil {
		t.Fatalf("dump failed: %v", r)
	}
	c.reapDumped(tree)
	pidfile := c.pidfile()
	args := c.restoreArgs(pidfile, "-d", "--root", filepath.Join(c.dir, "root"),
		"--external", "mnt[usr]:/usr", "--external", "mnt[out]:"+filepath.Join(c.dir, "ns_pty.out"))
	if r := c.amber(c.prog, args...); r.err != nil {
		t.Fatalf("restore failed: %v", r)
	}
	c.requireNewPidNamespace(pidfile)
	c.mustPass()
}

// TestNamespacesMountFiles dumps ns_mnt keeping, in its own root, a
// kind of file amber looks up by path (NS_MNT_FILES): inotify watches,
// a write lease being broken, an unlinked file mapped shared, an O_PATH
// symbolic link to an absolute path of its root, a FIFO with data; then
// all at once. Their paths are the container's, which the host's root
// does not have: dump and restore must look them up in the container's
// root. The program checks each after the restore.
func TestNamespacesMountFiles(t *testing.T) {
	for _, kinds := range []string{"inotify", "lease", "mapped", "symlink", "fifo", "inotify,lease,mapped,symlink,fifo"} {
		t.Run(strings.ReplaceAll(kinds, ",", "+"), func(t *testing.T) {
			t.Setenv("NS_MNT_FILES", kinds)
			c := startNamespaced(t, "ns_mnt", unix.CLONE_NEWPID|unix.CLONE_NEWNS|unix.CLONE_NEWIPC)
			tree := descendants(c.pid)
			if r := c.dump(append(nsMntDumpArgs(), fileLocks...)...); r.err != nil {
				t.Fatalf("dump failed: %v", r)
			}
			c.reapDumped(tree)
			pidfile := c.pidfile()
			if r := c.amber(c.prog, c.restoreArgs(pidfile, append(nsMntRestoreArgs(c), fileLocks...)...)...); r.err != nil {
				t.Fatalf("restore failed: %v", r)
			}
			c.requireNewPidNamespace(pidfile)
			c.mustPass()
		})
	}
}
