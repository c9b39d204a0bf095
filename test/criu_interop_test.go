package test

import (
	"os"
	"testing"
)

// interopPrograms are the programs that CRIU and amber each restore from
// the other's dump: one of each kind of state both tools handle.
var interopPrograms = []string{
	"counter",      // one task, state in registers
	"threads_tls",  // threads
	"fork_cow",     // a fork tree sharing pages copy-on-write
	"pipe_read",    // pipes
	"sk_unix_pair", // unix sockets
	"file_offset",  // regular files
}

// criuBin is the CRIU binary named by AMBER_CRIU; the test is skipped
// without one (CI has no CRIU).
func criuBin(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("AMBER_CRIU")
	if bin == "" {
		t.Skip("set AMBER_CRIU to a CRIU binary to run the interop tests")
	}
	return bin
}

// criu runs CRIU with args in the case's scratch dir.
func (c *zcase) criu(bin string, args ...string) amberResult {
	r := runAmber(bin, c.dir, c.prog, args...)
	c.results = append(c.results, r)
	return r
}

// TestCriuDumpsAmberRestores dumps each program with CRIU and restores it
// with amber: the program then checks its own state.
func TestCriuDumpsAmberRestores(t *testing.T) {
	for _, name := range interopPrograms {
		t.Run(name, func(t *testing.T) {
			bin := criuBin(t)
			c := startCase(t, name)
			tree := descendants(c.pid)
			if r := c.criu(bin, c.dumpArgs()...); r.err != nil {
				t.Fatalf("criu dump failed: %v", r)
			}
			c.reapDumped(tree)
			c.mustRestoreDetached()
			c.mustPass()
		})
	}
}

// TestAmberDumpsCriuRestores dumps each program with amber and restores
// it with CRIU.
func TestAmberDumpsCriuRestores(t *testing.T) {
	for _, name := range interopPrograms {
		t.Run(name, func(t *testing.T) {
			bin := criuBin(t)
			c := startCase(t, name)
			c.mustDump()
			pidfile := c.pidfile()
			if r := c.criu(bin, c.restoreArgs(pidfile, "-d")...); r.err != nil {
				t.Fatalf("criu restore failed: %v", r)
			}
			c.checkRestoredPid(pidfile)
			c.mustPass()
		})
	}
}
