package restore

// The chain of an incremental dump: pages a pagemap leaves to the parent
// images (PE_PARENT entries) are read from the images the "parent" link
// names, and from theirs in turn.

import (
	"fmt"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/pagemap"

	"amber/internal/image"
	"amber/internal/mem"
)

// maxChain bounds the parent images followed: links that lead in a
// circle must end in an error, not a hang.
const maxChain = 64

// loadLayers reads, for every task whose pagemap leaves pages to the
// parent images, its pagemaps in them, as deep as they go on leaving
// pages to theirs.
func (tree *treeImages) loadLayers() error {
	for _, t := range tree.tasks {
		for pm := t.pagemap; inParent(pm); pm = t.layers[len(t.layers)-1].pagemap {
			dir, err := tree.parent(len(t.layers))
			if err != nil {
				return fmt.Errorf("pid %d: %w", t.pid, err)
			}
			layer, err := loadLayer(dir, t.pid)
			if err != nil {
				return err
			}
			t.layers = append(t.layers, layer)
		}
	}
	return nil
}

// inParent tells whether a pagemap leaves pages to the parent images.
func inParent(pm []*pagemap.PagemapEntry) bool {
	for _, e := range pm {
		if e.GetFlags()&mem.PEParent != 0 || e.GetInParent() {
			return true
		}
	}
	return false
}

// parent is the images directory depth+1 links up from the tree's,
// opened (and checked against its manifest) the first time it is needed.
func (tree *treeImages) parent(depth int) (image.Dir, error) {
	if depth >= maxChain {
		return image.Dir{}, fmt.Errorf("%s: more than %d levels of parent images (links in a circle?)", tree.dir, maxChain)
	}
	for len(tree.parents) <= depth {
		child := tree.dir
		if n := len(tree.parents); n > 0 {
			child = tree.parents[n-1]
		}
		dir, err := child.OpenParent()
		if err != nil {
			return image.Dir{}, fmt.Errorf("parent images: %w", err)
		}
		// The pages images are checked while memory is filled, as the
		// tree's own (waitPagesCheck): the first images of a chain hold
		// the bulk of its pages, a GiB of a pre-copied process, which
		// checked here held up its restore 80 ms. The lazy-pages daemon
		// reads the parents' pages unchecked: a lazy restore checks
		// them whole here.
		later := image.IsPagesName
		if tree.lazy {
			later = nil
		}
		check, err := image.VerifyManifest(dir, later)
		if err != nil {
			dir.Close()
			return image.Dir{}, fmt.Errorf("parent images: %w", err)
		}
		tree.parents = append(tree.parents, dir)
		tree.parentChecks = append(tree.parentChecks, check)
	}
	return tree.parents[depth], nil
}

// layer is a task's pagemap in one parent images directory, and the
// pages image it names.
type layer struct {
	pagemap []*pagemap.PagemapEntry
	pages   image.Path
}

// loadLayer reads the pagemap of pid in one parent images directory.
func loadLayer(dir image.Dir, pid int) (layer, error) {
	path := dir.PagemapPath(pid)
	head, entries, err := mem.ReadPagemap(path)
	if err != nil {
		return layer{}, fmt.Errorf("parent images: %w", err)
	}
	pages, err := pagesOf(dir, path, head, entries)
	if err != nil {
		return layer{}, fmt.Errorf("parent images: %w", err)
	}
	return layer{pagemap: entries, pages: pages}, nil
}

// parentLayers are the task's layers for its memory's plan, each pages
// image named as the task opens it: how is known only once the tree's
// namespaces are made (image.Dir.TasksViaProc, TasksVia).
func (t *taskImages) parentLayers() []mem.PagesLayer {
	out := make([]mem.PagesLayer, len(t.layers))
	for i, l := range t.layers {
		out[i] = mem.PagesLayer{Pagemap: l.pagemap, Pages: l.pages.ForTask()}
	}
	return out
}

// dirs are the tree's images directory and the parent images
// directories opened, nearest first.
func (tree *treeImages) dirs() []image.Dir {
	return append([]image.Dir{tree.dir}, tree.parents...)
}

// closeParents closes the parent images directories.
func (tree *treeImages) closeParents() {
	for _, c := range tree.parentChecks {
		c.Stop()
	}
	for _, d := range tree.parents {
		d.Close()
	}
	tree.parents, tree.parentChecks = nil, nil
}
