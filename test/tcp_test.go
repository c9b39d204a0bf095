package test

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// TestTCP covers what the zdtm table does not about inet sockets:
// refusals, and a dump that leaves the connections running.
func TestTCP(t *testing.T) {
	t.Run("dump_established_without_flag", testDumpEstablishedWithoutFlag)
	t.Run("dump_socket_of_other_netns", testDumpOtherNetns)
	t.Run("leave_running_established", testLeaveRunningEstablished)
	t.Run("established_restored_closed", testEstablishedRestoredClosed)
	t.Run("dump_in_flight_without_flag", testDumpInFlightWithoutFlag)
}

// testDumpInFlightWithoutFlag dumps tcp_skip_inflight with
// --tcp-established only: as criu, a listener with a connection to
// accept is refused, naming --tcp-skip-in-flight, and the program goes
// on with that connection still there to accept (not_dumped).
func testDumpInFlightWithoutFlag(t *testing.T) {
	c := startCase(t, "tcp_skip_inflight")
	r := c.dump("--tcp-established")
	t.Logf("refused: %s", r.stderr)
	requireFailureNamingPid(t, r, c.pid)
	for _, want := range []string{"wait to be accepted", "--tcp-skip-in-flight"} {
		requireFailure(t, r, want)
	}
	requireRunning(t, c.pid)
	if err := os.WriteFile(filepath.Join(c.dir, "not_dumped"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	c.mustPass()
}

// testEstablishedRestoredClosed dumps tcp_close00's connections whole
// (--tcp-established) and restores them closed (--tcp-close), as CRIU's
// socket-tcp-close0: the program finds them shut down.
func testEstablishedRestoredClosed(t *testing.T) {
	c := startCase(t, "tcp_close00")
	tree := descendants(c.pid)
	if r := c.dump("--tcp-established"); r.err != nil {
		t.Fatalf("dump failed: %v", r)
	}
	c.reapDumped(tree)
	pidfile := c.pidfile()
	if r := c.amber(c.prog, c.restoreArgs(pidfile, "-d", "--tcp-close")...); r.err != nil {
		t.Fatalf("restore failed: %v", r)
	}
	c.checkRestoredPid(pidfile)
	c.mustPass()
}

// testDumpEstablishedWithoutFlag dumps tcp_established00 without
// --tcp-established: as criu, amber must refuse, naming the pid, the
// descriptor and the option, and the program must go on as before.
func testDumpEstablishedWithoutFlag(t *testing.T) {
	c := startCase(t, "tcp_established00")
	r := c.dump()
	t.Logf("refused: %s", r.stderr)
	requireFailureNamingPid(t, r, c.pid)
	for _, want := range []string{"fd ", "ESTABLISHED", "--tcp-established"} {
		requireFailure(t, r, want)
	}
	requireRunning(t, c.pid)
	c.mustPass()
}

// testDumpOtherNetns dumps a program holding, on fd 3, a UDP socket made
// in another network namespace: amber must refuse, naming the fd and
// the namespace, and leave the program running.
func testDumpOtherNetns(t *testing.T) {
	s := socketInNewNetns(t)
	defer s.Close()
	c := startCaseWithFiles(t, "pause", s)
	r := c.dump()
	t.Logf("refused: %s", r.stderr)
	requireFailureNamingPid(t, r, c.pid)
	for _, want := range []string{"fd 3", "network namespace"} {
		requireFailure(t, r, want)
	}
	requireRunning(t, c.pid)
	c.mustPass()
}

// socketInNewNetns makes a UDP socket in a network namespace of its
// own, on a thread that goes back to the test's namespace before it
// runs anything else. A thread left locked in the new namespace is not
// always ended: Go keeps the main thread, the one /proc/PID/ns shows,
// so the whole test process would seem to be in that namespace (and
// ns_files, which opens its parent's, failed the dump).
func socketInNewNetns(t *testing.T) *os.File {
	t.Helper()
	type result struct {
		fd  int
		err error
	}
	done := make(chan result)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			done <- result{-1, err}
			return
		}
		defer unix.Close(orig)
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			done <- result{-1, err}
			return
		}
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			// Stay locked: the thread ends with the goroutine.
			if fd >= 0 {
				unix.Close(fd)
			}
			done <- result{-1, fmt.Errorf("back to the test's network namespace: %w", err)}
			return
		}
		runtime.UnlockOSThread()
		done <- result{fd, err}
	}()
	r := <-done
	if r.err != nil {
		t.Fatalf("socket in a new network namespace: %v", r.err)
	}
	return os.NewFile(uintptr(r.fd), "socket of another netns")
}

// testLeaveRunningEstablished dumps tcp_established00 with
// --leave-running: its connections must leave repair mode and receive
// again (the program checks every byte), and the images must still
// restore once it is gone, though its connections closed since (their
// ports may be in TIME_WAIT) and its output file grew.
func testLeaveRunningEstablished(t *testing.T) {
	c := startCase(t, "tcp_established00")
	if r := c.dump("--leave-running", "--tcp-established"); r.err != nil {
		t.Fatalf("dump failed: %v", r)
	}
	requireRunning(t, c.pid)
	c.mustPass()
	pidfile := c.pidfile()
	if r := c.amber(c.prog, c.restoreArgs(pidfile, "-d", "--tcp-established", "--skip-file-check")...); r.err != nil {
		t.Fatalf("restore failed: %v", r)
	}
	c.checkRestoredPid(pidfile)
	c.mustPass()
}

// requireRunning requires that pid runs, neither stopped nor a zombie.
func requireRunning(t *testing.T, pid int) {
	t.Helper()
	if st, err := readStat(pid); err != nil || st.State == 't' || st.State == 'T' || st.State == 'Z' {
		t.Fatalf("pid %d not running as before (%v)", pid, err)
	}
}
