package compel

import (
	"strconv"
	"strings"
)

func splitLines(s string) []string { return strings.Split(strings.TrimSpace(s), "\n") }

func parseRange(line string, s, e *uint64) {
	f := strings.Fields(line)
	a, b, _ := strings.Cut(f[0], "-")
	*s, _ = strconv.ParseUint(a, 16, 64)
	*e, _ = strconv.ParseUint(b, 16, 64)
}
