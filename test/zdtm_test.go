package test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// programs are the zdtm test programs, zdtm/static/NAME.c, in the order
// they run. Each is started, dumped, restored and asked to check itself.
var programs = []program{
	{name: "heap_globals"},
	{name: "counter"},
	{name: "file_offset"},
	{name: "sigactions"},
	{name: "vdso_time"},
	{name: "vdso_kernels", own: true},
	{name: "nanosleep"},
	{name: "pipe_read"},
	{name: "pause"},
	{name: "avx", cflags: []string{"-mavx2", "-mavx512f"}, cpuFlags: []string{"avx2", "avx512f"}},
	{name: "maps_file", nofile: 1024},
	{name: "maps_runs"},
	{name: "mprotect"},
	{name: "maps_flags"},
	{name: "hugetlb00", hugePages: 8},
	{name: "proc_maps_fd"},
	{name: "brk_grow"},
	{name: "fd_set"},
	{name: "files_many", nofile: 4096},
	{name: "stack_deep"},
	{name: "threads_tls", cflags: []string{"-pthread"}},
	{name: "futex_wait", cflags: []string{"-pthread"}},
	{name: "threads100", cflags: []string{"-pthread"}},
	{name: "fork_cow"},
	{name: "tree50"},
	{name: "zombie"},
	{name: "pgrp_session"},
	{name: "session_leaders"},
	{name: "clone_files"},
	{name: "shared_file_pos"},
	{name: "shm_anon_single"},
	{name: "shm_anon_fork"},
	{name: "shm_anon_priv"},
	{name: "memfd00"},
	{name: "memfd_mmap"},
	{name: "memfd_fork"},
	{name: "file_shared_map"},
	{name: "sysv_shm00"},
	{name: "sysv_shm_lock"},
	{name: "sysv_shm_huge", hugePages: 8},
	{name: "timers00", cflags: []string{"-lrt"}},
	{name: "itimer_pending"},
	{name: "timer_signals", cflags: []string{"-lrt"}},
	{name: "signal_flood", cflags: []string{"-lrt", "-pthread"}},
	{name: "nnp00"},
	{name: "sigpending00"},
	{name: "poll_restart"},
	{name: "signal_restart", cflags: []string{"-pthread"}, own: true},
	{name: "seccomp_filter"},
	{name: "seccomp_chain", cflags: []string{"-pthread"}},
	{name: "seccomp_strict"},
	{name: "io_uring_sqpoll", refused: "is an io_uring"},
	{name: "vfork_wait", own: true},
	{name: "predump_writer", own: true},
	{name: "migrate_worker", cflags: []string{"-pthread"}, own: true},
	{name: "layout_churn", own: true},
	{name: "lazy_mem", cflags: []string{"-pthread"}, own: true},
	{name: "lazy_fork", own: true},
	{name: "lazy_layout", cflags: []string{"-pthread"}, own: true},
	{name: "guard_pages"},
	{name: "sk_unix_pair"},
	{name: "sk_unix_listen"},
	{name: "sk_unix_abstract"},
	{name: "sk_unix_tree"},
	{name: "sk_unix_peer_closed"},
	{name: "sk_unix_shutdown"},
	{name: "fork_churn"},
	{name: "fifo00"},
	{name: "unlink_fstat00"},
	{name: "ghost_then_bind"},
	{name: "ghost_foreign", own: true},
	{name: "unlink_tmpfile"},
	{name: "unlink_mmap_shared", cflags: []string{"-pthread"}},
	{name: "rmdir_open"},
	{name: "cwd_removed"},
	{name: "symlink_open"},
	{name: "proc_child_open"},
	{name: "proc_dead"},
	{name: "ghost_fifo"},
	{name: "ghost_dev"},
	{name: "eventfd00"},
	{name: "epoll00"},
	{name: "epoll_closed"},
	{name: "signalfd00"},
	{name: "timerfd00"},
	{name: "inotify00"},
	{name: "pty00"},
	{name: "pty01"},
	{name: "pty02"},
	{name: "tty_ctty"},
	{name: "vt_ctty"},
	{name: "pipe_reopen00"},
	{name: "tcp_listen00"},
	{name: "tcp_established00", dumpFlags: tcpEstablished, restoreFlags: tcpEstablished},
	{name: "tcp_buffers00", dumpFlags: tcpEstablished, restoreFlags: tcpEstablished},
	{name: "tcp_close_wait00", dumpFlags: tcpEstablished, restoreFlags: tcpEstablished},
	{name: "tcp_half_closed00", dumpFlags: tcpEstablished, restoreFlags: tcpEstablished},
	{name: "tcp_close00", dumpFlags: tcpClose, restoreFlags: tcpClose},
	{name: "tcp_closed00"},
	{name: "tcp_reset00", cloneflags: unix.CLONE_NEWNET, dumpFlags: tcpEstablished, restoreFlags: tcpEstablished},
	{name: "packet_ring00", cloneflags: unix.CLONE_NEWNET},
	{name: "sock_filter"},
	{name: "ipc_combo", cflags: []string{"-lrt"}},
	{name: "ipc_many", nofile: 4096},
	{name: "caps00"},
	{name: "caps01", cflags: []string{"-pthread"}},
	{name: "caps_same"},
	{name: "stopped_tree", cflags: []string{"-pthread"}},
	{name: "stopped_refused", cflags: []string{"-pthread"}, own: true},
	{name: "oom_score_adj"},
	{name: "loginuid", cflags: []string{"-pthread"}},
	{name: "child_subreaper"},
	{name: "thp_disable"},
	{name: "sched_policy", cflags: []string{"-pthread"}},
	{name: "pipe_size"},
	{name: "membarrier"},
	{name: "sigpending01", cflags: []string{"-pthread"}},
	{name: "file_fown"},
	{name: "file_fown_many", cflags: []string{"-pthread"}},
	{name: "zombie_pgrp"},
	{name: "pidfd00", cflags: []string{"-pthread"}},
	{name: "sk_unix_scm"},
	{name: "sk_unix_ghost"},
	{name: "sk_unix_self"},
	{name: "sk_unix_ext", dumpFlags: extUnixSk, restoreFlags: extUnixSk},
	{name: "file_locks_mix", dumpFlags: fileLocks, restoreFlags: fileLocks},
	{name: "ns_uts_ipc", cloneflags: unix.CLONE_NEWUTS | unix.CLONE_NEWIPC, own: true},
	{name: "ipcns_sysv", cloneflags: unix.CLONE_NEWIPC, own: true},
	{name: "sem_undo", cloneflags: unix.CLONE_NEWIPC, own: true},
	{name: "ipcns_mqueue", cflags: []string{"-lrt"}, cloneflags: unix.CLONE_NEWIPC, own: true},
	{name: "ns_pid", cloneflags: unix.CLONE_NEWPID, own: true},
	{name: "ns_mnt", cloneflags: unix.CLONE_NEWPID | unix.CLONE_NEWNS | unix.CLONE_NEWIPC, own: true},
	{name: "ns_pty", cloneflags: unix.CLONE_NEWPID | unix.CLONE_NEWNS, own: true},
	{name: "ns_proc", cflags: []string{"-static"}, cloneflags: unix.CLONE_NEWPID | unix.CLONE_NEWNS, own: true},
	{name: "ns_userns", cflags: []string{"-static"}, cloneflags: unix.CLONE_NEWPID | unix.CLONE_NEWNS, userns: true, own: true},
	{name: "cgroup_member", own: true},
	{name: "cgroup_threads", cflags: []string{"-pthread"}, own: true},
	{name: "cgroup_ns", own: true},
	{name: "unhashed_cwd", own: true},
	{name: "netns_lo", cloneflags: unix.CLONE_NEWNET, own: true},
	{name: "inherit_fd", own: true},
	{name: "rseq_abort"},
	{name: "chroot_tree"},
	{name: "droppable_dump"},
	{name: "ghost_holes", dumpFlags: ghostFiemap},
	{name: "timer_thread", cflags: []string{"-pthread", "-lrt"}},
	{name: "link_remap", dumpFlags: linkRemap},
	{name: "inotify_ghost"},
	{name: "ns_files"},
	{name: "fanotify_marks"},
	{name: "ns_time"},
	{name: "ns_time_kids", refused: "time namespace for its children"},
	{name: "ns_pid_lock", cloneflags: unix.CLONE_NEWPID, restoreFlags: fileLocks, own: true},
	{name: "netns_veth", cloneflags: unix.CLONE_NEWNET, own: true},
	{name: "netns_sub_sk", cloneflags: unix.CLONE_NEWNET, own: true},
	{name: "tcp_skip_inflight", dumpFlags: tcpSkipInFlight, restoreFlags: tcpEstablished},
	{name: "tcp_peer_lock", restoreFlags: tcpEstablished, own: true},
	{name: "tcp_syn_sent00", cloneflags: unix.CLONE_NEWNET, dumpFlags: tcpEstablished, restoreFlags: tcpEstablished},
	{name: "netns_rules", cloneflags: unix.CLONE_NEWNET, dumpFlags: tcpEstablished, restoreFlags: tcpEstablished, own: true},
	{name: "sk_raw_ping"},
	{name: "sk_raw_l2tp"},
	{name: "sk_packet"},
	// In a network namespace of its own: no link or address event
	// reaches its sockets' groups before the dump.
	{name: "sk_netlink", cloneflags: unix.CLONE_NEWNET},
}

// tcpEstablished dumps and restores established TCP connections.
var tcpEstablished = []string{"--tcp-established"}

// tcpSkipInFlight dumps established TCP connections, leaving out those
// waiting to be accepted.
var tcpSkipInFlight = []string{"--tcp-established", "--tcp-skip-in-flight"}

// tcpClose dumps TCP connections without their state and restores them
// closed.
var tcpClose = []string{"--tcp-close"}

// extUnixSk dumps and restores unix sockets connected outside the tree.
var extUnixSk = []string{"--ext-unix-sk"}

// fileLocks dumps and restores file locks.
var fileLocks = []string{"--file-locks"}

// linkRemap dumps files removed from their path but linked elsewhere.
var linkRemap = []string{"--link-remap"}

// ghostFiemap dumps unlinked files of up to 16 MiB, their holes found as
// CRIU finds them with --ghost-fiemap.
var ghostFiemap = []string{"--ghost-limit", "16M", "--ghost-fiemap"}

// TestZdtm runs each program through dump, detached restore and check.
// The programs share PIDs and CPUs: they run one after another.
func TestZdtm(t *testing.T) {
	for _, p := range programs {
		if p.own {
			continue
		}
		t.Run(p.name, func(t *testing.T) {
			c := startCase(t, p.name)
			if p.refused != "" {
				requireFailure(t, c.dump(), p.refused)
				c.mustPass()
				return
			}
			c.mustDump()
			c.mustRestoreDetached()
			c.mustPass()
		})
	}
}

// TestLeaveRunning dumps with --leave-running: the original must go on
// running, and the images must still restore once it is gone.
func TestLeaveRunning(t *testing.T) {
	c := startCase(t, "counter")
	cpus := cpusAllowed(t, c.pid)
	if r := c.dump("--leave-running"); r.err != nil {
		t.Fatalf("dump failed: %v", r)
	}
	if after := cpusAllowed(t, c.pid); after != cpus {
		t.Fatalf("original pid %d runs on CPUs %s after dump --leave-running, was %s", c.pid, after, cpus)
	}
	st, err := readStat(c.pid)
	if err != nil || st.State == 'Z' {
		t.Fatalf("original pid %d gone after dump --leave-running (%v)", c.pid, err)
	}
	if st.State == 't' || st.State == 'T' {
		t.Fatalf("original pid %d left stopped (state %c)", c.pid, st.State)
	}
	if ok, err := progressing(c.pid, time.Second); err != nil || !ok {
		t.Fatalf("original pid %d does not run after dump --leave-running (%v)", c.pid, err)
	}
	if err := killAndReap(c.pid); err != nil {
		t.Fatal(err)
	}
	c.mustRestoreDetached()
	c.mustPass()
}

// TestRestoreNotDetached restores without -d: amber stays the program's
// parent and exits with its exit status.
func TestRestoreNotDetached(t *testing.T) {
	c := startCase(t, "heap_globals")
	c.mustDump()
	pidfile := c.pidfile()
	ctx, cancel := context.WithTimeout(context.Background(), amberTimeout)
	defer cancel()
	cmd, stdout, stderr, err := amberCommand(ctx, testEnv.amber, c.dir, c.prog, c.restoreArgs(pidfile)...)
	if err != nil {
		t.Fatal(err)
	}
	defer stdout.Close()
	defer stderr.Close()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	result := func(err error) amberResult {
		return amberResult{args: cmd.Args, stdout: readAll(stdout), stderr: readAll(stderr), err: err}
	}

	for deadline := time.Now().Add(readyTimeout); ; time.Sleep(20 * time.Millisecond) {
		select {
		case err := <-exited:
			t.Fatalf("amber exited before the program was restored: %v", result(err))
		default:
		}
		if _, err := readPidfile(pidfile); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("restore: %v", err)
		}
	}
	c.checkRestoredPid(pidfile)
	if err := unix.Kill(c.pid, unix.SIGTERM); err != nil {
		t.Fatalf("SIGTERM pid %d: %v", c.pid, err)
	}
	select {
	case err := <-exited:
		c.results = append(c.results, result(err))
		if err != nil {
			t.Fatalf("amber restore did not exit 0 after the program's SIGTERM: %v", result(err))
		}
	case <-time.After(exitTimeout):
		t.Fatalf("amber restore still running %v after the program's SIGTERM", exitTimeout)
	}
	if !c.hasLine("PASS") {
		t.Fatalf("%s did not say PASS", c.prog.name)
	}
}

// cpusAllowed is the Cpus_allowed_list of /proc/PID/status.
func cpusAllowed(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Cpus_allowed_list:"); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("/proc/%d/status has no Cpus_allowed_list", pid)
	return ""
}

// TestRestoreRelativeImagesDir restores a tree with -D relative to
// amber's working directory, which is not the tasks': each task opens its
// pages image itself, from its own working directory.
func TestRestoreRelativeImagesDir(t *testing.T) {
	c := startCase(t, "fork_cow")
	c.mustDump()
	rel := strings.TrimPrefix(c.images, "/")
	pidfile := c.pidfile()
	r := runAmber(testEnv.amber, "/", c.prog, "restore", "-D", rel, "--pidfile", pidfile, "-v4", "-o", "restore.log", "-d")
	c.results = append(c.results, r)
	if r.err != nil {
		t.Fatalf("restore with a relative -D failed: %v", r)
	}
	c.checkRestoredPid(pidfile)
	c.mustPass()
}
