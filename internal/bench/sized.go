package bench

import (
	"fmt"
	"io"
	"regexp"
	"strconv"
)

// Workloads that carry their memory size in their name, run only when
// named: lazy1g (a lazy restore of 1 GiB, beside a plain one) and
// pageserver512 (a dump of 512 MiB to a page server over loopback,
// beside one to local disk). The size is in MiB, or in GiB with a g.

// sizedKind is a kind of sized workload.
type sizedKind string

const (
	kindLazy       sizedKind = "lazy"
	kindPageServer sizedKind = "pageserver"
)

// sizedWorkload is one named sized workload.
type sizedWorkload struct {
	name string
	kind sizedKind
	mib  int
}

// maxSizedMiB bounds a sized workload's memory (1 TiB).
const maxSizedMiB = 1 << 20

// sizedName is the form of a sized workload's name.
var sizedName = regexp.MustCompile(`^(lazy|pageserver)(\d+)(g?)$`)

// parseSized reads a sized workload's name; ok is false for a name of
// another form.
func parseSized(name string) (w sizedWorkload, ok bool, err error) {
	m := sizedName.FindStringSubmatch(name)
	if m == nil {
		return w, false, nil
	}
	n, err := strconv.Atoi(m[2])
	unit := 1
	if m[3] == "g" {
		unit = 1 << 10
	}
	if err != nil || n <= 0 || n > maxSizedMiB/unit {
		return w, true, fmt.Errorf("bench: workload %q: want a size from 1 MiB to 1 TiB, in MiB or in GiB with a g (lazy1g, pageserver512)", name)
	}
	return sizedWorkload{name: name, kind: sizedKind(m[1]), mib: n * unit}, true, nil
}

// splitSized separates the sized workloads of names, in the order
// named and each once, from the others.
func splitSized(names []string) (rest []string, ws []sizedWorkload, err error) {
	seen := map[string]bool{}
	for _, n := range names {
		w, ok, err := parseSized(n)
		switch {
		case err != nil:
			return nil, nil, err
		case !ok:
			rest = append(rest, n)
		case !seen[n]:
			seen[n] = true
			ws = append(ws, w)
		}
	}
	return rest, ws, nil
}

// runSized runs rounds of each sized workload and prints its table.
func runSized(e env, ws []sizedWorkload, rounds int, out io.Writer) error {
	for _, w := range ws {
		var err error
		switch w.kind {
		case kindLazy:
			err = runLazy(e, w, rounds, out)
		case kindPageServer:
			err = runPageServer(e, w, rounds, out)
		}
		if err != nil {
			return err
		}
	}
	return nil
}
