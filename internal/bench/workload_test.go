package bench

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestSelectWorkloads(t *testing.T) {
	all, err := selectWorkloads(nil)
	if err != nil || len(all) != len(WorkloadNames()) {
		t.Fatalf("selectWorkloads(nil) = %d workloads, %v", len(all), err)
	}
	got, err := selectWorkloads([]string{"vma10k", "mem512"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].name != "mem512" || got[1].name != "vma10k" {
		t.Errorf("selected %v, want mem512 and vma10k in report order", got)
	}
	if _, err := selectWorkloads([]string{"mem512", "nope"}); err == nil {
		t.Error("selecting an unknown workload succeeded")
	}
}

func TestWorkloadNames(t *testing.T) {
	want := []string{"mem512", "mem1g", "vma10k", "filemap4k", "files10k", "threads100", "tree50"}
	if got := WorkloadNames(); !reflect.DeepEqual(got, want) {
		t.Errorf("WorkloadNames() = %v, want %v", got, want)
	}
}

func TestPrograms(t *testing.T) {
	ws := append(allWorkloads(), sweepWorkloads([]int{64, 128})...)
	want := []string{"mem", "vmas", "filemap", "files", "threads", "tree"}
	if got := programs(ws); !reflect.DeepEqual(got, want) {
		t.Errorf("programs = %v, want %v", got, want)
	}
}

func TestFloorArgs(t *testing.T) {
	pages := []string{"/i/pages-1.img", "/i/pages-2.img"}
	ws, _ := selectWorkloads([]string{"mem1g", "vma10k", "filemap4k", "files10k"})
	for i, want := range [][]string{
		{"mem", "/i/pages-1.img", "/i/pages-2.img"},
		{"vmas", "10000", "-", "/i/pages-1.img"},
		{"vmas", "4096", "/d/filemap.data", "/i/pages-1.img"},
		{"files", "10000", "/d/files.d"},
	} {
		if got := floorArgs(ws[i], "/d", pages); !reflect.DeepEqual(got, want) {
			t.Errorf("floorArgs(%s) = %v, want %v", ws[i].name, got, want)
		}
	}
}

func TestParseFloor(t *testing.T) {
	if d, err := parseFloor("floor_ns 1500000\n"); err != nil || d != 1500000 {
		t.Errorf("parseFloor = %v, %v; want 1.5ms", d, err)
	}
	for _, bad := range []string{"", "floor_ns x\n", "floor_ns -3\n", "time 5\n"} {
		if _, err := parseFloor(bad); err == nil {
			t.Errorf("parseFloor(%q) succeeded", bad)
		}
	}
}

func TestPagesImagesAndDirSize(t *testing.T) {
	dir := t.TempDir()
	for name, size := range map[string]int{"pages-1.img": 10, "pages-2.img": 30, "mm-5.img": 7} {
		if err := os.WriteFile(filepath.Join(dir, name), make([]byte, size), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := pagesImages(dir)
	want := []string{filepath.Join(dir, "pages-2.img"), filepath.Join(dir, "pages-1.img")}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("pagesImages = %v, %v; want %v", got, err, want)
	}
	if n, err := dirSize(dir); err != nil || n != 47 {
		t.Errorf("dirSize = %d, %v; want 47", n, err)
	}
	if _, err := pagesImages(t.TempDir()); err == nil {
		t.Error("pagesImages of an empty dir succeeded")
	}
}

func TestFailureLines(t *testing.T) {
	err := &commandError{Cmd: "dump", Err: errors.New("exit status 1"), Line: "amber: dump pid 3: no"}
	if got := failureLine(err); got != "amber: dump pid 3: no" {
		t.Errorf("failureLine = %q", got)
	}
	if got := failureLine(errors.New("first\nsecond")); got != "first" {
		t.Errorf("failureLine = %q", got)
	}
	if got := firstLine("\n  \n amber: x \nmore"); got != "amber: x" {
		t.Errorf("firstLine = %q", got)
	}
	w := workload{name: "t", maybeUnsupported: true}
	if line, ok := isUnsupported(amberFailure(w, err)); !ok || line != err.Line {
		t.Errorf("amberFailure of a maybe-unsupported workload = %q, %v", line, ok)
	}
	w.maybeUnsupported = false
	if _, ok := isUnsupported(amberFailure(w, err)); ok {
		t.Error("amberFailure of a supported workload says unsupported")
	}
}
