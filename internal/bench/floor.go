package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// filesDir is where the files workload (test/bench/src/files.c) keeps
// its files, in its directory.
const filesDir = "files.d"

// floorResult is one run of the floor program.
type floorResult struct {
	inProcess time.Duration // the floor's own clock_gettime around its work
	process   time.Duration // the floor as a whole process, fork to reap
}

// runFloor runs the floor for w on the images in imagesDir; dir is the
// workload's directory (where a mapped file lives).
func runFloor(binDir, dir, imagesDir string, w workload) (floorResult, error) {
	pages, err := pagesImages(imagesDir)
	if err != nil {
		return floorResult{}, err
	}
	t, err := runTimed(dir, floorProg, filepath.Join(binDir, floorProg), floorArgs(w, dir, pages)...)
	if err != nil {
		return floorResult{}, fmt.Errorf("floor for %s: %w", w.name, err)
	}
	ns, err := parseFloor(t.stdout)
	if err != nil {
		return floorResult{}, fmt.Errorf("floor for %s: %w", w.name, err)
	}
	return floorResult{inProcess: ns, process: t.wall}, nil
}

// floorArgs are the floor's arguments for w; pages are the pages images,
// largest first.
func floorArgs(w workload, dir string, pages []string) []string {
	if w.floor == floorFiles {
		return []string{"files", strconv.Itoa(w.files), filepath.Join(dir, filesDir)}
	}
	if w.floor == floorVMAs {
		file := "-"
		if w.mapped != "" {
			file = filepath.Join(dir, w.mapped)
		}
		return []string{"vmas", strconv.Itoa(w.vmas), file, pages[0]}
	}
	return append([]string{"mem"}, pages...)
}

// parseFloor reads the floor's "floor_ns N" line.
func parseFloor(out string) (time.Duration, error) {
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(line, "floor_ns "); ok {
			ns, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil || ns < 0 {
				return 0, fmt.Errorf("bad floor output %q", line)
			}
			return time.Duration(ns), nil
		}
	}
	return 0, fmt.Errorf("no floor_ns line in output %q", out)
}

// pagesImages lists the pages-*.img files of dir, largest first.
func pagesImages(dir string) ([]string, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "pages-*.img"))
	if err != nil {
		return nil, err
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("no pages image in %s", dir)
	}
	size := map[string]int64{}
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		size[p] = fi.Size()
	}
	sort.SliceStable(paths, func(i, j int) bool { return size[paths[i]] > size[paths[j]] })
	return paths, nil
}

// dirSize is the total size of the regular files under dir.
func dirSize(dir string) (int64, error) {
	var total int64
	err := filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		fi, err := d.Info()
		if err == nil {
			total += fi.Size()
		}
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("size of %s: %w", dir, err)
	}
	return total, nil
}
