package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"

	"amber/internal/image"
	"amber/internal/log"
	"amber/internal/pageserver"
)

// pageServerAddr is the page server a dump sends its pages to, "" for
// none.
func pageServerAddr(o Options) string {
	if !o.PageServer || o.PsSocket != 0 {
		return ""
	}
	return net.JoinHostPort(o.Address, strconv.Itoa(o.Port))
}

// psSocket is a dump's connection to its page server made already
// (--page-server --ps-socket FD), nil for none.
func psSocket(o Options) *os.File {
	if !o.PageServer || o.PsSocket == 0 {
		return nil
	}
	return os.NewFile(uintptr(o.PsSocket), fmt.Sprintf("--ps-socket %d", o.PsSocket))
}

// runPageServer receives the pages of one dump (CRIU's page-server):
// it listens on --address (every address without) and --port, takes
// one connection, or with --ps-socket serves that connection, made
// already, and writes the pagemap and pages images into -D until the
// dump ends its session.
func runPageServer(o Options, l *log.Logger) error {
	dir, err := image.OpenDir(o.ImagesDir)
	if err != nil {
		return fmt.Errorf("page-server: %w", err)
	}
	defer dir.Close()
	if err := linkPrev(dir, o.PrevImagesDir); err != nil {
		return fmt.Errorf("page-server: %w", err)
	}
	conn, err := pageServerConn(o, l)
	if err != nil {
		return fmt.Errorf("page-server: %w", err)
	}
	defer conn.Close()
	peer := peerName(conn)
	l.Infof("page-server: connection from %s", peer)
	serve := pageserver.Serve
	if o.PsSocket != 0 {
		// CRIU's --ps-socket: the connection goes on after the session.
		serve = pageserver.ServeShared
	}
	st, err := serve(conn, dir, l)
	if err != nil {
		return fmt.Errorf("page-server: session from %s: %w", peer, err)
	}
	l.Infof("page-server: %d pagemaps, %d pages written, %d left to the parent images", st.Dests, st.Pages, st.Holes)
	return nil
}

// pageServerConn is the page server's connection: --ps-socket's, or
// the first one to --address and --port, once --status-fd says it
// listens.
func pageServerConn(o Options, l *log.Logger) (net.Conn, error) {
	if o.PsSocket != 0 {
		f := os.NewFile(uintptr(o.PsSocket), "ps-socket")
		defer f.Close()
		conn, err := net.FileConn(f)
		if err != nil {
			return nil, fmt.Errorf("--ps-socket %d: %w", o.PsSocket, err)
		}
		l.Infof("page-server: serving --ps-socket %d, images into %s", o.PsSocket, o.ImagesDir)
		if err := statusReady(o.StatusFd); err != nil {
			conn.Close()
			return nil, err
		}
		return conn, nil
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(o.Address, strconv.Itoa(o.Port)))
	if err != nil {
		return nil, err
	}
	defer ln.Close()
	l.Infof("page-server: listening on %s, images into %s", ln.Addr(), o.ImagesDir)
	if err := statusReady(o.StatusFd); err != nil {
		return nil, err
	}
	conn, err := ln.Accept()
	if err != nil {
		return nil, fmt.Errorf("accept: %w", err)
	}
	return conn, nil
}

// peerName names the other end of conn: its address, if it has one.
func peerName(conn net.Conn) string {
	// A socket pair's end has no address: Go names it "@".
	if a := conn.RemoteAddr(); a != nil && a.String() != "" && a.String() != "@" {
		return a.String()
	}
	return "the --ps-socket peer"
}

// linkPrev links the images to those of the dump before
// (--prev-images-dir), as CRIU's page server does: the pages the dump
// leaves to its parent are found there.
func linkPrev(dir image.Dir, prev string) error {
	if prev == "" {
		return nil
	}
	target := prev
	if !filepath.IsAbs(target) {
		target = filepath.Join(dir.Resolved(), prev)
	}
	if _, err := os.Stat(target); err != nil {
		return fmt.Errorf("--prev-images-dir: %w", err)
	}
	return dir.LinkParent(prev)
}

// statusReady writes a zero byte to the --status-fd descriptor and
// closes it, as CRIU does once it is ready for its client.
func statusReady(fd int) error {
	if fd == 0 {
		return nil
	}
	f := os.NewFile(uintptr(fd), "status-fd")
	defer f.Close()
	if _, err := f.Write([]byte{0}); err != nil {
		return fmt.Errorf("--status-fd %d: %w", fd, err)
	}
	return f.Close()
}
