package dump

// Pre-dump and incremental dumps (CRIU's pre-dump, --prev-images-dir,
// --track-mem): memory copied while the tree runs on, and dumps that
// leave the pages unchanged since to the images before.

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/inventory"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/vma"
	"google.golang.org/protobuf/proto"

	"amber/internal/image"
	"amber/internal/mem"
)

// preDumpTree copies the memory of every process of the frozen tree into
// pagemap and pages images, with the pstree and inventory that name them
// (CRIU's pre-dump); the caller then lets the tree run on.
func (d *dumper) preDumpTree(tree *frozenTree) error {
	if err := d.removeStale(); err != nil {
		return err
	}
	if err := d.linkParent(); err != nil {
		return err
	}
	if _, err := d.namespaces(tree); err != nil {
		return err
	}
	if err := d.findPrivateShmem(tree); err != nil {
		return err
	}
	var entries []proto.Message
	for i, p := range tree.procs {
		entries = append(entries, pstreeEntry(p, d.pids))
		if p.zombie {
			continue
		}
		ps, err := tree.collect(p)
		if err != nil {
			return fmt.Errorf("pid %d: %w", p.pid, err)
		}
		if err := tree.layout(ps); err != nil {
			return err
		}
		mmE, err := d.mmEntry(ps)
		if err != nil {
			return fmt.Errorf("pid %d: %w", p.pid, err)
		}
		// No mm image: guard pages are recorded by the dump.
		if _, err := d.dumpMemory(ps, mmE.GetVmas(), uint32(i+1)); err != nil {
			return fmt.Errorf("pid %d: %w", p.pid, err)
		}
	}
	if err := image.WriteFile(d.dir.PstreePath(), image.Pstree, entries...); err != nil {
		return err
	}
	inv := &inventory.InventoryEntry{ImgVersion: proto.Uint32(imagesVersion), FdinfoPerId: proto.Bool(true),
		NsPerId: proto.Bool(true), Lsmtype: inventory.Lsmtype_NO_LSM.Enum()}
	if err := image.WriteFile(d.dir.InventoryPath(), image.Inventory, inv); err != nil {
		return err
	}
	if err := d.writeTrackRecord(); err != nil {
		return err
	}
	return d.writeManifest()
}

// linkParent links the images to those of the dump before
// (--prev-images-dir), as CRIU does: a "parent" link to the path given,
// which a relative path takes from the images directory.
func (d *dumper) linkParent() error {
	if d.opts.PrevImagesDir == "" {
		return nil
	}
	return d.dir.LinkParent(d.opts.PrevImagesDir)
}

// openPrev opens the images of the dump before (--prev-images-dir).
func openPrev(imagesDir, prev string) (image.Dir, error) {
	if !filepath.IsAbs(prev) {
		prev = filepath.Join(imagesDir, prev)
	}
	dir, err := image.OpenDir(prev)
	if err != nil {
		return image.Dir{}, fmt.Errorf("--prev-images-dir: %w", err)
	}
	return dir, nil
}

// sentRecord is where a dump to a page server records the pages it
// sent for pid, for a dump on top: nil where none can come, the tree
// not outliving this dump (neither a pre-dump nor --leave-running), and
// the record would only lengthen the frozen window (a final dump of
// amber migrate writes it while the tree waits frozen).
func (d *dumper) sentRecord(pid int) *image.Path {
	if !d.opts.PreDump && !d.opts.LeaveRunning {
		return nil
	}
	p := d.dir.SentPagemapPath(pid)
	return &p
}

// dumpMemory writes the pagemap and pages images of a process, leaving
// to the parent images what an incremental dump may, and returns its
// guard pages.
func (d *dumper) dumpMemory(ps *procState, vmas []*vma.VmaEntry, pagesID uint32) ([]mem.Run, error) {
	inc, err := d.incremental(ps, vmas)
	if err != nil {
		return nil, fmt.Errorf("memory tracking: %w", err)
	}
	var st mem.PagesStats
	start := time.Now()
	if d.ps != nil {
		st, err = mem.SendPages(ps.frozenProc.threads[0], ps.frozenProc.parasite(), vmas, mem.MappedAlone(ps.vmas), d.ps, d.pids.of(ps.pid), inc, d.sentRecord(d.pids.of(ps.pid)), d.lazy != nil)
	} else {
		st, err = mem.DumpPages(ps.frozenProc.threads[0], vmas, mem.MappedAlone(ps.vmas), d.dir, d.pids.of(ps.pid), pagesID, inc, d.lazy != nil)
		d.sums[d.dir.PagesPath(pagesID).Name()] = image.ManifestFile{Sum: st.Sum, Pieces: st.Pieces}
	}
	if err != nil {
		return nil, fmt.Errorf("memory: %w", err)
	}
	d.stats.addMemory(st, time.Since(start))
	d.log.Infof("pid %d: %d threads, %d pages dumped, %d left to the parent images, of %d in private mappings, in %v",
		ps.pid, len(ps.threads), st.Pages, st.InParent, st.Scanned, time.Since(start))
	if d.ps != nil {
		d.log.Infof("pid %d: %d of the pages sent spliced from the process, the others copied", ps.pid, st.Piped)
	}
	d.runs[ps.pid] = st.Runs
	if st.Lazy != nil && st.Lazy.Bytes() > 0 {
		d.lazy[d.pids.of(ps.pid)] = st.Lazy
		d.log.Infof("pid %d: %d bytes left lazy", ps.pid, st.Lazy.Bytes())
	}
	return st.Guards, nil
}
