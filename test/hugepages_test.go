package test

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
)

// nrHugepages is the sysctl that sizes the pool of default huge pages.
const nrHugepages = "/proc/sys/vm/nr_hugepages"

// needHugePages makes sure n huge pages of the default size are free, as
// CRIU's zdtm does for its hugetlb tests: it grows vm.nr_hugepages if
// needed and sets it back when t ends. t is skipped if the kernel cannot
// find the memory.
func needHugePages(t *testing.T, n int) {
	t.Helper()
	free, err := meminfo("HugePages_Free")
	if err != nil {
		t.Skipf("huge pages: %v", err)
	}
	if free >= n {
		return
	}
	old, err := readInt(nrHugepages)
	if err != nil {
		t.Skipf("huge pages: %v", err)
	}
	t.Cleanup(func() {
		if err := os.WriteFile(nrHugepages, []byte(strconv.Itoa(old)), 0); err != nil {
			t.Errorf("setting %s back to %d: %v", nrHugepages, old, err)
		}
	})
	want := old + n - free
	if err := os.WriteFile(nrHugepages, []byte(strconv.Itoa(want)), 0); err != nil {
		t.Skipf("huge pages: setting %s to %d: %v", nrHugepages, want, err)
	}
	if free, err = meminfo("HugePages_Free"); err != nil || free < n {
		t.Skipf("%d huge pages free after setting %s to %d (%v), need %d", free, nrHugepages, want, err, n)
	}
}

// meminfo reads a field of /proc/meminfo that is a plain number.
func meminfo(key string) (int, error) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), key+":"); ok {
			return strconv.Atoi(strings.TrimSpace(v))
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no %s in /proc/meminfo", key)
}

// readInt reads a file holding one decimal number.
func readInt(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}
