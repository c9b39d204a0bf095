package main

import (
	"fmt"
	"net"
	"strconv"
	"time"

	"amber/internal/compel"
	"amber/internal/lazy"
	"amber/internal/log"
	"amber/internal/pageserver"
)

// runLazyPages serves the page faults of one lazy restore from the
// images in -D (CRIU's lazy-pages): it listens on the socket there,
// takes the restore's processes, and ends once every page is in. With
// --page-server, the pages a dump --lazy-pages left out come from it.
func runLazyPages(o Options, l *log.Logger) error {
	opts := lazy.Options{
		Dir:   o.ImagesDir,
		Ready: func() error { return statusReady(o.StatusFd) },
		Log:   l,
	}
	var src *pageserver.Source
	if o.PageServer {
		var err error
		if src, err = pageserver.DialSource(pageServerAddr(o), lazyTimeout(o)); err != nil {
			return fmt.Errorf("lazy-pages: %w", err)
		}
		defer src.Abort()
		opts.Fetch = src.Fetch
		l.Infof("lazy-pages: pages left at the source come from %s", pageServerAddr(o))
	}
	st, err := lazy.Serve(opts)
	if err != nil {
		return err
	}
	if src != nil {
		// Every page is in: the dump may kill its tree.
		if err := src.Close(); err != nil {
			return fmt.Errorf("lazy-pages: end the session: %w", err)
		}
	}
	l.Infof("lazy-pages: %d processes, %d bytes on faults, %d in the background, all in after %v",
		st.Procs, st.Faulted, st.Prefetched, st.AllIn)
	if st.Unplaced != nil {
		return fmt.Errorf("lazy-pages: %w: no page of it was placed, the restored processes run on", st.Unplaced)
	}
	return nil
}

// lazyTimeout bounds each request to the source (--timeout): a source
// that stops answering fails the daemon instead of leaving faults
// waiting.
func lazyTimeout(o Options) time.Duration {
	if o.Timeout == 0 {
		return compel.DefaultTimeout
	}
	return time.Duration(o.Timeout) * time.Second
}

// lazyPagesAddr is where a dump --lazy-pages serves its lazy pages
// (--address, every address without, and --port), "" for a dump that
// is not lazy.
func lazyPagesAddr(o Options) string {
	if !o.LazyPages || o.Verb != "dump" {
		return ""
	}
	return net.JoinHostPort(o.Address, strconv.Itoa(o.Port))
}
