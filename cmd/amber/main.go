// Command amber checkpoints a running Linux process tree into a directory
// of CRIU-format images and restores it, with CRIU's command line:
//
//	amber dump -t PID [-D DIR] [-o LOG] [-v[N]] [-R] [-j]
//	amber restore [-D DIR] [-o LOG] [-v[N]] [-d] [--pidfile FILE] [-j] [--trust-images]
//	amber check [--feature NAME]
//	amber show DIR|FILE
//	amber check-images [-D DIR]
//	amber swrk FD
//
// The parsing is in options.go; this file runs the verbs.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"amber/cmd/amber/internal/show"
	"amber/cmd/amber/internal/swrk"
	"amber/internal/bench"
	"amber/internal/compel"
	"amber/internal/dump"
	"amber/internal/files"
	"amber/internal/image"
	"amber/internal/kerndat"
	"amber/internal/log"
	"amber/internal/restore"
)

// version is what --version prints, in CRIU's "Version: X.Y" form.
const version = "0.1"

func main() {
	if compel.IsStub() {
		// A restore stub is killed before its first instruction; if one
		// ever runs, amber died mid-restore and it must not go on.
		os.Exit(1)
	}
	// amber is a short-lived command whose own memory stays small: let the
	// collector run only when the heap nears memoryLimit, not every few
	// MiB of image decoding and planning.
	debug.SetGCPercent(-1)
	debug.SetMemoryLimit(memoryLimit)
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// memoryLimit is the heap size at which amber's garbage collector runs.
const memoryLimit = 48 << 20

// run executes one command line and returns the exit status: 0, 1 on any
// error (reported on stderr as "amber: ..." and in the log file), or the
// status of a restored tree amber waited for.
func run(args []string, stdout, stderr io.Writer) int {
	opts, parseErr := Parse(args)
	// Before amber opens anything: a number amber's own files take must
	// not pass for the caller's descriptor.
	parseErr = errors.Join(parseErr, checkInheritFds(opts))
	if opts.Help {
		fmt.Fprint(stdout, helpText(opts.Verb))
		return 0
	}
	logs, err := openLog(opts, stdout, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "amber: %v\n", errors.Join(parseErr, err))
		return 1
	}
	defer logs.close()
	if parseErr != nil {
		return logs.fail(parseErr)
	}
	status, err := runVerb(opts, logs.Logger, stdout)
	if err != nil {
		return logs.fail(err)
	}
	return status
}

// runVerb runs the verb of a valid command line.
func runVerb(o Options, l *log.Logger, stdout io.Writer) (int, error) {
	if o.Version {
		fmt.Fprintf(stdout, "Version: %s\n", version)
		return 0, nil
	}
	switch o.Verb {
	case "dump", "pre-dump":
		return 0, runDump(o, l)
	case "restore":
		return runRestore(o, l)
	case "page-server":
		return 0, runPageServer(o, l)
	case "migrate":
		return 0, runMigrate(o, l, stdout)
	case "receive":
		return 0, runReceive(o, l)
	case "lazy-pages":
		return 0, runLazyPages(o, l)
	case "check":
		return 0, runCheck(o, l, stdout)
	case "show":
		return 0, show.Path(stdout, o.Args[0])
	case "check-images":
		return 0, runCheckImages(o, stdout)
	case "swrk":
		fd, _ := strconv.Atoi(o.Args[0]) // validate checked it
		return 0, swrk.Serve(fd, version)
	case "bench":
		return 0, bench.Run(bench.Options{Rounds: o.Rounds, Workloads: o.Args, PlotPath: o.Plot, MigrateMiB: o.Size,
			CriuPath: os.Getenv("AMBER_CRIU"), Out: stdout})
	}
	return 1, fmt.Errorf("command %s: %w", o.Verb, errNotSupported)
}

// ghostLimit is --ghost-limit, or CRIU's default.
func ghostLimit(o Options) int64 {
	if o.GhostLimit == 0 {
		return files.DefaultGhostLimit
	}
	return o.GhostLimit
}

func runDump(o Options, l *log.Logger) error {
	l.Infof("dump: tree %d into %s", o.Tree, o.ImagesDir)
	l.Debugf("dump: leave-running %v, shell-job %v, tcp-established %v, file-locks %v, timeout %ds, pre-dump-mode %q",
		o.LeaveRunning, o.ShellJob, o.TCPEstablished, o.FileLocks, o.Timeout, o.PreDumpMode)
	// dump.Run's errors name the task and the phase.
	return dump.Run(dump.Options{
		Pid:          o.Tree,
		ImagesDir:    o.ImagesDir,
		LeaveRunning: o.LeaveRunning,
		ShellJob:     o.ShellJob,
		GhostLimit:   ghostLimit(o),
		Timeout:      time.Duration(o.Timeout) * time.Second,
		Log:          l,
		// As criu: established TCP connections only with --tcp-established,
		// or without their state with --tcp-close.
		TCPEstablished: o.TCPEstablished,
		TCPClose:       o.TCPClose,
		FileLocks:      o.FileLocks,
		LinkRemap:      o.LinkRemap,
		ExtMounts:      o.ExtMounts,
		ExtUnixSk:      o.ExtUnixSk,
		ExtNet:         o.ExtNet,
		StatsDir:       o.inWorkDir("."),
		// As criu: a listener with connections to accept refuses the
		// dump, unless they are left out.
		TCPSkipInFlight: o.TCPSkipInFlight,
		PreDump:         o.Verb == "pre-dump",
		PrevImagesDir:   o.PrevImagesDir,
		PageServer:      pageServerAddr(o),
		PageServerConn:  psSocket(o),
		LazyPages:       lazyPagesAddr(o),
		LazyReady:       func() error { return statusReady(o.StatusFd) },
		Fault:           faultHook(),
		FreezeCgroup:    o.FreezeCgroup,
		EmptyNet:        o.EmptyNet,
		ManageCgroups:   o.ManageCgroups,
		CgroupYard:      o.CgroupYardPath(),
		NetworkLock:     o.NetworkLock,
		NetworkLockSet:  o.NetworkLockSet,
		// CRIU's pre-dump always tracks memory.
		TrackMem: o.TrackMem || o.Verb == "pre-dump",
	})
}

// runRestore restores the tree. Detached, it returns once the tree runs;
// otherwise the restored root is amber's child and amber exits with its
// status, like criu.
func runRestore(o Options, l *log.Logger) (int, error) {
	l.Infof("restore: from %s (detached %v)", o.ImagesDir, o.Detach)
	if o.NetworkLockSet {
		// As CRIU's: the lock to lift is the one the dump took.
		l.Warnf("--network-lock is ignored by restore: the images say how the dump locked the network")
	}
	pf, err := createPidFile(o.PidFilePath())
	if err != nil {
		return 1, err
	}
	res, err := restore.Run(restore.Options{
		ImagesDir:     o.ImagesDir,
		Detach:        o.Detach,
		ShellJob:      o.ShellJob,
		SkipFileCheck: o.SkipFileCheck,
		TrustImages:   o.TrustImages,
		Log:           l,
		// As criu: established TCP connections only with --tcp-established;
		// --tcp-close restores them closed.
		TCPEstablished: o.TCPEstablished,
		TCPClose:       o.TCPClose,
		FileLocks:      o.FileLocks,
		Root:           o.Root,
		ExtMounts:      o.ExtMounts,
		ManageCgroups:  o.ManageCgroups,
		CgroupRoots:    o.CgroupRoots,
		CgroupYard:     o.CgroupYardPath(),
		EmptyNet:       o.EmptyNet,
		ExtVeths:       o.ExtVeths,
		LazyPages:      o.LazyPages,
		ExtUnixSk:      o.ExtUnixSk,
		InheritFds:     o.InheritFds,
		JoinNet:        o.JoinNet,
	})
	if err != nil {
		pf.discard()
		return 1, err
	}
	if err := pf.write(res.Pid); err != nil {
		// As criu: a restore whose pidfile failed has failed.
		unix.Kill(res.Pid, unix.SIGKILL)
		return 1, err
	}
	l.Infof("restore: root task %d", res.Pid)
	if o.Detach {
		return 0, nil
	}
	return waitRoot(res.Pid, l)
}

// waitRoot waits for the restored root, amber's child, and turns its end
// into an exit status: its exit code, or 128+signal.
func waitRoot(pid int, l *log.Logger) (int, error) {
	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(pid, &ws, 0, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return 1, fmt.Errorf("wait for restored task %d: %w", pid, err)
		}
		break
	}
	switch {
	case ws.Exited():
		l.Infof("restore: task %d exited with %d", pid, ws.ExitStatus())
		return ws.ExitStatus(), nil
	case ws.Signaled():
		l.Infof("restore: task %d killed by %v", pid, ws.Signal())
		return 128 + int(ws.Signal()), nil
	}
	return 1, fmt.Errorf("wait for restored task %d: unexpected status %#x", pid, uint32(ws))
}

// runCheck reports the kernel features amber needs, or answers for one
// --feature.
func runCheck(o Options, l *log.Logger, stdout io.Writer) error {
	info := kerndat.Probe()
	l.Debugf("check: kernel %s", info.Kernel)
	if o.Feature != "" {
		if err := info.CheckFeature(o.Feature); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s is supported\n", o.Feature)
		return nil
	}
	for _, f := range info.Features() {
		fmt.Fprintln(stdout, f.Line())
	}
	missing := info.Missing()
	if len(missing) == 0 {
		fmt.Fprintln(stdout, "Looks good.")
		return nil
	}
	names := make([]string, len(missing))
	for i, f := range missing {
		names[i] = f.Name
	}
	return fmt.Errorf("check: missing required features: %s", strings.Join(names, ", "))
}

// runCheckImages checks the images directory against its manifest, as a
// restore would before it starts, without restoring.
func runCheckImages(o Options, stdout io.Writer) error {
	dir, err := image.OpenDir(o.ImagesDir)
	if err != nil {
		return err
	}
	defer dir.Close()
	c, err := image.VerifyManifest(dir, nil)
	if err != nil {
		return err
	}
	if c == nil {
		return fmt.Errorf("%s: no %s to check the images against (a dump by CRIU, or an older amber)",
			o.ImagesDir, image.ManifestName)
	}
	fmt.Fprintf(stdout, "%s: %d image files match %s\n", o.ImagesDir, len(c.Manifest.Files), image.ManifestName)
	return nil
}
