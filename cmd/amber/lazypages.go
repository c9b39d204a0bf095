package main

import (
	"amber/internal/lazy"
	"amber/internal/log"
)

// runLazyPages serves the page faults of one lazy restore from the
// images in -D (CRIU's lazy-pages): it listens on the socket there,
// takes the restore's processes, and ends once every page is in.
func runLazyPages(o Options, l *log.Logger) error {
	st, err := lazy.Serve(lazy.Options{
		Dir:   o.ImagesDir,
		Ready: func() error { return statusReady(o.StatusFd) },
		Log:   l,
	})
	if err != nil {
		return err
	}
	l.Infof("lazy-pages: %d processes, %d bytes on faults, %d in the background, all in after %v",
		st.Procs, st.Faulted, st.Prefetched, st.AllIn)
	return nil
}
