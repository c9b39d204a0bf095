package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"amber/internal/log"
	"amber/internal/migrate"
)

// defaultMaxIters is migrate's most pre-dumps without --max-iters.
const defaultMaxIters = 8

// defaultMinPages ends the pre-dumps once one sends at most this many
// pages (1 MiB): the freeze then sends as little.
const defaultMinPages = 256

func setMaxIters(o *Options, val string, _ bool) error {
	n, err := strconv.Atoi(val)
	if err != nil || n < 0 {
		return fmt.Errorf("bad --max-iters %q (want 0 or more)", val)
	}
	o.MaxIters, o.HasIters = n, true
	return nil
}

func setSize(o *Options, val string, _ bool) error {
	n, err := strconv.Atoi(val)
	if err != nil || n <= 0 {
		return fmt.Errorf("bad --size %q (want MiB, 1 or more)", val)
	}
	o.Size = n
	return nil
}

// validateMigrate checks the options of migrate and receive.
func (o Options) validateMigrate() error {
	if o.Verb == "receive" {
		if o.Port == 0 {
			return errors.New("receive: --port is required")
		}
		return nil
	}
	switch {
	case o.Tree == 0:
		return errors.New("migrate: -t/--tree PID is required")
	case o.To == "":
		return errors.New("migrate: --to HOST:PORT is required")
	}
	if _, port, err := net.SplitHostPort(o.To); err != nil || port == "" {
		return fmt.Errorf("migrate: --to %q: want HOST:PORT", o.To)
	}
	return nil
}

// runMigrate moves the tree to amber receive at --to and prints how it
// went: the pages of each round and the downtime.
func runMigrate(o Options, l *log.Logger, stdout io.Writer) error {
	iters := o.MaxIters
	if !o.HasIters {
		iters = defaultMaxIters
	}
	res, err := migrate.Migrate(migrate.Options{Pid: o.Tree, To: o.To, MaxIters: iters, MinPages: defaultMinPages,
		ShellJob: o.ShellJob, TCPEstablished: o.TCPEstablished, TCPClose: o.TCPClose, FileLocks: o.FileLocks,
		GhostLimit: ghostLimit(o), Timeout: time.Duration(o.Timeout) * time.Second, TwoHosts: o.TwoHosts, Lazy: o.Lazy,
		Fault: faultHook(), Log: l})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "handover: %s\n", res.Handover)
	for i, p := range res.PreDumps {
		fmt.Fprintf(stdout, "pre-dump %d: %d pages\n", i+1, p)
	}
	fmt.Fprintf(stdout, "frozen: %d pages\n", res.Final)
	how := "measured on one clock"
	if !res.Exact {
		how = "two hosts: without one message's latency"
	}
	fmt.Fprintf(stdout, "downtime: %.1f ms (%s)\n", ms(res.Downtime), how)
	if o.Lazy || res.AllIn > 0 {
		fmt.Fprintf(stdout, "all pages in: %.1f ms after the resume\n", ms(res.AllIn))
	}
	fmt.Fprintf(stdout, "total: %.1f ms\n", ms(res.Total))
	fmt.Fprintf(stdout, "migrated: pid %d runs on %s\n", res.Pid, o.To)
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// runReceive takes one migration on --port and restores its tree into
// -D; the restored root's PID goes to --pidfile.
func runReceive(o Options, l *log.Logger) error {
	pf, err := createPidFile(o.PidFilePath())
	if err != nil {
		return err
	}
	res, err := migrate.Receive(migrate.ReceiveOptions{Address: o.Address, Port: o.Port, ImagesDir: o.ImagesDir,
		KeepImages: o.KeepImages, TrustImages: o.TrustImages, SkipFileCheck: o.SkipFileCheck,
		Timeout: time.Duration(o.Timeout) * time.Second, Log: l,
		Ready: func() error { return statusReady(o.StatusFd) }, Fault: faultHook()})
	if err != nil {
		pf.discard()
		return err
	}
	l.Infof("receive: restored, root task %d", res.Pid)
	return pf.write(res.Pid)
}

// faultEnv names the point of a migration, or of a dump --lazy-pages,
// at which amber kills itself (AMBER_MIGRATE_FAULT=point): the fault
// tests' way to lose either side at a chosen moment.
const faultEnv = "AMBER_MIGRATE_FAULT"

// faultHook is the Fault hook of migrate and receive: SIGKILL of amber
// itself at the point faultEnv names, nil without it.
func faultHook() func(string) {
	at := os.Getenv(faultEnv)
	if at == "" {
		return nil
	}
	return func(point string) {
		if point == at {
			unix.Kill(os.Getpid(), unix.SIGKILL)
		}
	}
}
