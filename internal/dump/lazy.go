package dump

// Lazy dumps (CRIU's dump --lazy-pages): the pages of private anonymous
// memory stay out of the images (PE_LAZY entries); once every image is
// written the tree stays frozen and amber serves those pages to one
// lazy-pages daemon (lazy-pages --page-server) over the page server
// protocol, reading them from the frozen processes. With --page-server
// the other pages, and the pagemaps, go to the page server first, and
// the lazy ones are served on its address and port once its session
// ended, as CRIU does: pre-dumps to a page server, then a lazy dump on
// top, whose pages written since are fetched from the source. The tree is killed
// once the daemon ends the session with every page in. Where CRIU kills
// it too when the daemon goes away without ending the session, amber
// lets it run on: the restore may lack pages, and the tree is the one
// whole copy left.

import (
	"errors"
	"fmt"
	"net"

	"amber/internal/mem"
	"amber/internal/pageserver"
)

// listenLazy listens where the lazy pages will be served, if the dump is
// lazy, before the tree is touched: an address that cannot be had fails
// the dump with the tree as it was. A dump whose lazy pages go over a
// connection of LazyDial's listens nowhere; one that sends the other
// pages to a page server listens only once that session is over (see
// listenLazyAfter).
func (d *dumper) listenLazy() error {
	switch {
	case d.opts.LazyPages == "" && d.opts.LazyDial == nil:
		return nil
	case d.opts.PreDump:
		return errors.New("--lazy-pages: a pre-dump leaves no pages lazy")
	}
	d.lazy = lazySources{}
	if d.opts.LazyDial != nil || d.opts.PageServer != "" {
		return nil
	}
	ln, err := net.Listen("tcp", d.opts.LazyPages)
	if err != nil {
		return fmt.Errorf("--lazy-pages: %w", err)
	}
	d.lazyLn = ln
	return nil
}

// listenLazyAfter listens for the lazy-pages daemon of a dump that sent
// its other pages to a page server: as CRIU's, on the same --address and
// --port, which the page server (on this host, as in CRIU's tests) has
// given up once the session ended. Listening earlier would take the
// port from it. The tree is frozen and dumped: an address that cannot
// be had fails the dump, and the tree runs on.
func (d *dumper) listenLazyAfter() error {
	ln, err := net.Listen("tcp", d.opts.LazyPages)
	if err != nil {
		return fmt.Errorf("--lazy-pages with --page-server: the lazy pages are served where the page server was, "+
			"%s, as CRIU's (the page server must run on this host, and be gone): %w", d.opts.LazyPages, err)
	}
	d.lazyLn = ln
	return nil
}

// closeLazy stops listening, if it still does.
func (d *dumper) closeLazy() {
	if d.lazyLn != nil {
		d.lazyLn.Close()
		d.lazyLn = nil
	}
}

// serveLazy serves the lazy pages of the frozen tree to one lazy-pages
// daemon, and returns once it had them all.
func (d *dumper) serveLazy() error {
	var total uint64
	for _, s := range d.lazy {
		total += s.Bytes()
	}
	conn, err := d.lazyConn(total)
	if err != nil {
		return err
	}
	defer conn.Close()
	d.log.Infof("Lazy pages: the lazy-pages daemon at %s connected", conn.RemoteAddr())
	st, err := pageserver.ServeLazy(conn, &lazyServed{src: d.lazy, half: total / 2, fault: d.opts.Fault}, d.log)
	if err != nil {
		return fmt.Errorf("lazy pages to %s: %w", conn.RemoteAddr(), err)
	}
	d.log.Infof("Lazy pages: %d bytes in %d requests", st.Bytes, st.Requests)
	return nil
}

// lazyConn is the connection of the lazy-pages daemon: LazyDial's, or
// the first one on the socket listening for it.
func (d *dumper) lazyConn(total uint64) (net.Conn, error) {
	if d.opts.LazyDial != nil {
		d.log.Infof("Serving %d bytes of lazy pages of %d processes", total, len(d.lazy))
		conn, err := d.opts.LazyDial()
		if err != nil {
			return nil, fmt.Errorf("lazy pages: %w", err)
		}
		return conn, nil
	}
	if d.lazyLn == nil {
		if err := d.listenLazyAfter(); err != nil {
			return nil, err
		}
	}
	d.log.Infof("Serving %d bytes of lazy pages of %d processes on %s", total, len(d.lazy), d.lazyLn.Addr())
	if d.opts.LazyReady != nil {
		if err := d.opts.LazyReady(); err != nil {
			return nil, err
		}
	}
	conn, err := d.lazyLn.Accept()
	d.closeLazy()
	if err != nil {
		return nil, fmt.Errorf("lazy pages: accept: %w", err)
	}
	return conn, nil
}

// lazySources are the lazy pages of each process, by PID in the images.
type lazySources map[int]*mem.LazySource

// lazyServed reads the lazy pages for the daemon (pageserver.PageReader)
// and calls the Fault hook at "lazy-half" once half of them are sent.
type lazyServed struct {
	src          lazySources
	served, half uint64
	fault        func(point string)
}

// ReadPages reads lazy pages of process pid.
func (l *lazyServed) ReadPages(pid int, vaddr uint64, buf []byte) (int, error) {
	s, ok := l.src[pid]
	if !ok {
		return 0, fmt.Errorf("pid %d has no lazy pages", pid)
	}
	n, err := s.ReadPages(vaddr, buf)
	if l.served < l.half && l.served+uint64(n) >= l.half && l.fault != nil {
		l.fault("lazy-half")
	}
	l.served += uint64(n)
	return n, err
}
