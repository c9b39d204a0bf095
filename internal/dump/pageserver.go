package dump

// Dumping to a page server (--page-server): the pages of every process
// go over TCP to a page server, which writes the pagemap and pages
// images into its own directory; every other image is written here.

import (
	"errors"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/vma"

	"fmt"
	"os"

	"amber/internal/image"
	"amber/internal/mem"
	"amber/internal/pageserver"
)

// connectPageServer connects to the page server, if the dump has one,
// before the tree is touched: a server that cannot be reached fails the
// dump with the tree as it was.
func (d *dumper) connectPageServer() error {
	if d.opts.PageServer == "" {
		return nil
	}
	c, err := pageserver.Dial(d.opts.PageServer)
	if err != nil {
		return err
	}
	d.ps = c
	d.log.Infof("Sending pages to the page server at %s", d.opts.PageServer)
	return nil
}

// abortPageServer drops the connection of a dump that did not end its
// session, which tells the server the dump failed.
func (d *dumper) abortPageServer() {
	if d.ps != nil {
		d.ps.Abort()
		d.ps = nil
	}
}

// sendMemory sends a process's pages to the page server.
func (d *dumper) sendMemory(ps *procState, vmas []*vma.VmaEntry, inc *mem.Incremental) (mem.PagesStats, error) {
	st, err := mem.SendPages(ps.frozenProc.threads[0], vmas, d.ps, ps.pid, inc)
	if err == nil {
		d.sent[ps.pid] = st.Sum
	}
	return st, err
}

// writeManifest ends the page server's session, if any, then writes the
// manifest. The page server's images are covered only when it wrote them
// into this directory: the pages images hold what was sent, whose sums
// the dump knows. Elsewhere, the directory is only part of the dump once
// they join it, and no manifest is written.
func (d *dumper) writeManifest() error {
	if d.ps == nil {
		return image.WriteManifest(d.dir, d.sums)
	}
	err := d.ps.Close()
	d.ps = nil
	if err != nil {
		return err
	}
	for pid, sum := range d.sent {
		head, _, err := mem.ReadPagemap(d.dir.PagemapPath(pid))
		if errors.Is(err, os.ErrNotExist) {
			d.log.Infof("The page server's images are not in %s: no %s written", d.dir, image.ManifestName)
			return nil
		}
		if err != nil {
			return fmt.Errorf("the page server's pagemap: %w", err)
		}
		d.sums[d.dir.PagesPath(head.GetPagesId()).Name()] = sum
	}
	return image.WriteManifest(d.dir, d.sums)
}
