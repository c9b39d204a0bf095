package dump

// Dumping to a page server (--page-server): the pages of every process
// go over TCP to a page server, which writes the pagemap and pages
// images into its own directory; every other image is written here.

import (
	"fmt"
	"net"

	"amber/internal/image"
	"amber/internal/pageserver"
)

// connectPageServer connects to the page server, if the dump has one,
// before the tree is touched: a server that cannot be reached fails the
// dump with the tree as it was.
func (d *dumper) connectPageServer() error {
	if f := d.opts.PageServerConn; f != nil {
		conn, err := net.FileConn(f)
		if err != nil {
			return fmt.Errorf("the page server's connection (%s): %w", f.Name(), err)
		}
		d.ps = pageserver.NewClient(conn, f.Name())
		d.log.Infof("Sending pages to the page server on %s", f.Name())
		return nil
	}
	if d.opts.PageServer == "" {
		return nil
	}
	c, err := pageserver.Dial(d.opts.PageServer, d.opts.Timeout)
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

// writeManifest ends the page server's session, if any, then writes the
// manifest, which covers only the images of a dump that wrote them all:
// those of a page server are not in it. CRIU's page server answers the
// end of the session before it writes its pagemaps out, so the dump
// cannot cover them even when they are in its own directory; and a
// manifest without them would refuse the directory once they join it.
func (d *dumper) writeManifest() error {
	if d.ps == nil {
		return image.WriteManifest(d.dir, d.sums)
	}
	err := d.ps.Close()
	d.ps = nil
	if err != nil {
		return err
	}
	d.log.Infof("Pages sent to a page server: no %s written", image.ManifestName)
	return nil
}

// prevPagemap is the pagemap of pid in the parent images: the image, or
// where a dump to a page server left it on the server, the record of
// what that dump sent.
func (d *dumper) prevPagemap(pid int) image.Path {
	p := d.prev.PagemapPath(pid)
	if _, err := p.Stat(); err != nil {
		if sent := d.prev.SentPagemapPath(pid); statOK(sent) {
			return sent
		}
	}
	return p
}

func statOK(p image.Path) bool {
	_, err := p.Stat()
	return err == nil
}
