package test

// amber migrate's faults at random moments: amber migrate killed, amber
// receive killed, or every connection between them cut, after a random
// delay, wherever in the migration that falls. Whatever the moment, the
// source runs on or the destination has the whole process, never
// neither; and whichever runs checks all its memory.

import (
	"context"
	"fmt"
	"io"
	"math/rand"
	"net"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// cutProxy forwards every connection it accepts to a receiver, until
// cut closes them all.
type cutProxy struct {
	ln    net.Listener
	to    string
	mu    sync.Mutex
	conns []net.Conn
	cut   bool
}

// startCutProxy listens on a free loopback port and forwards to addr.
func startCutProxy(t *testing.T, addr string) *cutProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, to: addr}
	t.Cleanup(p.cutAll)
	go p.serve()
	return p
}

func (p *cutProxy) addr() string { return p.ln.Addr().String() }

// forwarded tells whether any connection reached the receiver.
func (p *cutProxy) forwarded() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns) > 0
}

func (p *cutProxy) serve() {
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", p.to)
		if err != nil {
			in.Close()
			continue
		}
		p.mu.Lock()
		if p.cut {
			in.Close()
			out.Close()
		}
		p.conns = append(p.conns, in, out)
		p.mu.Unlock()
		go func() { io.Copy(out, in); out.(*net.TCPConn).CloseWrite() }()
		go func() { io.Copy(in, out); in.(*net.TCPConn).CloseWrite() }()
	}
}

// cutAll closes every connection, as a broken network would, and takes
// no more.
func (p *cutProxy) cutAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	p.ln.Close()
	for _, c := range p.conns {
		// RST, not FIN: nothing in flight arrives.
		c.(*net.TCPConn).SetLinger(0)
		c.Close()
	}
}

// TestMigrateRandomFaults migrates lazy_mem, the init of a pid
// namespace (the held handover), on one host and as between two, and
// at a random moment of each migration kills amber migrate, kills
// amber receive, or cuts the connections between them. After both
// ambers ended, at least one copy runs: the source, thawed, or the
// destination's, whole; each that runs passes its memory check. The
// seed is logged; AMBER_FAULT_SEED replays it.
func TestMigrateRandomFaults(t *testing.T) {
	seed := time.Now().UnixNano()
	if s := os.Getenv("AMBER_FAULT_SEED"); s != "" {
		seed, _ = strconv.ParseInt(s, 10, 64)
	}
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewSource(seed))
	for i := range 6 {
		fault := []string{"source", "destination", "connection"}[i%3]
		var extra []string
		hosts := "one-host"
		if i >= 3 {
			extra, hosts = []string{"--two-hosts"}, "two-hosts"
		}
		delay := time.Duration(rng.Int63n(int64(1200 * time.Millisecond)))
		t.Run(fmt.Sprintf("%s-%s-%dms", fault, hosts, delay/time.Millisecond), func(t *testing.T) {
			migrateWithFault(t, fault, delay, extra...)
		})
	}
}

// migrateWithFault migrates lazy_mem with extra options and, after
// delay, kills the source or destination amber, or cuts the connection;
// then it requires one copy at least, each passing.
func migrateWithFault(t *testing.T, fault string, delay time.Duration, extra ...string) {
	t.Setenv("LAZY_MIB", "64")
	c := startNamespaced(t, "lazy_mem", unix.CLONE_NEWPID)
	src := c.pid
	r := c.startReceive("received")
	proxy := startCutProxy(t, r.addr())
	stop := c.reapWhile()
	args := append([]string{"migrate", "-t", strconv.Itoa(src), "--to", proxy.addr(), "-v4"}, extra...)
	ctx, cancel := context.WithTimeout(context.Background(), amberTimeout)
	defer cancel()
	cmd, stdout, stderr, err := amberCommand(ctx, testEnv.amber, c.dir, program{}, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer stdout.Close()
	defer stderr.Close()
	cmd.Env = append(os.Environ(), "TMPDIR="+t.TempDir())
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	timer := time.AfterFunc(delay, func() {
		switch fault {
		case "source":
			cmd.Process.Kill()
		case "destination":
			r.cmd.Process.Kill()
		case "connection":
			proxy.cutAll()
		}
	})
	merr := cmd.Wait()
	timer.Stop()
	if fault != "destination" && !proxy.forwarded() {
		// The source killed, or cut off, before it connected: amber
		// receive waits for a migration, as a server does, and nothing
		// tells it this one will never come.
		r.cmd.Process.Kill()
	}
	rerr := r.exited()
	stop()
	t.Logf("migrate: %v\n%s%s", merr, readAll(stdout), readAll(stderr))
	t.Logf("receive: %v", rerr)
	// A copy being killed (by its amber or its guard) is let die.
	deadline := time.Now().Add(exitTimeout)
	left := c.liveCopies()
	for len(left) > 1 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		left = c.liveCopies()
	}
	t.Logf("running after the fault: %v (source %d)", left, src)
	if len(left) == 0 {
		t.Fatalf("neither the source nor a copy runs after the %s fault at %v:\nreceive:\n%s", fault, delay, readAll(r.out))
	}
	if len(left) > 1 {
		t.Logf("both the source and a copy run")
	}
	for _, pid := range left {
		c.pid = pid
		c.requireRuns()
		c.mustPass()
	}
}
