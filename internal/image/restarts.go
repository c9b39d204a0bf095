package image

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
)

// restartsName is amber's record of the threads dumped inside an
// interrupted system call: core images hold their registers as CRIU
// writes them, the call about to be entered again, and this file the
// kernel's restart code each was frozen with, which CRIU's format has
// no field for.
const restartsName = "amber-restarts.txt"

// WriteRestarts writes the restart codes by thread id; nothing if none.
func WriteRestarts(d Dir, codes map[int]uint64) error {
	if len(codes) == 0 {
		return nil
	}
	tids := make([]int, 0, len(codes))
	for tid := range codes {
		tids = append(tids, tid)
	}
	sort.Ints(tids)
	var b bytes.Buffer
	b.WriteString("# amber: threads dumped inside an interrupted system call\n# tid restart-code\n")
	for _, tid := range tids {
		fmt.Fprintf(&b, "%d %d\n", tid, codes[tid])
	}
	return d.File(restartsName).WriteFile(b.Bytes())
}

// ReadRestarts reads the restart codes by thread id: none for images
// without the file (CRIU's).
func ReadRestarts(d Dir) (map[int]uint64, error) {
	p := d.File(restartsName)
	f, err := p.Open()
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	codes, err := parseRestarts(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return codes, nil
}

func parseRestarts(r io.Reader) (map[int]uint64, error) {
	codes := map[int]uint64{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 2 {
			return nil, fmt.Errorf("line %d: %q: want TID CODE", n, line)
		}
		tid, err1 := strconv.Atoi(f[0])
		code, err2 := strconv.ParseUint(f[1], 10, 64)
		if err := errors.Join(err1, err2); err != nil || tid <= 0 {
			return nil, fmt.Errorf("line %d: %q: want TID CODE", n, line)
		}
		codes[tid] = code
	}
	return codes, sc.Err()
}
