package lazy

import (
	"runtime"
	"testing"
)

func TestSetProcs(t *testing.T) {
	defer runtime.SetDefaultGOMAXPROCS()
	for _, c := range []struct{ before, want, during int }{
		{1, 3, 3}, // raised, then put back
		{4, 3, 4}, // enough already: left alone
	} {
		runtime.GOMAXPROCS(c.before)
		restore := setProcs(c.want)
		if got := runtime.GOMAXPROCS(0); got != c.during {
			t.Errorf("from %d, for %d: GOMAXPROCS %d while the daemon runs, want %d", c.before, c.want, got, c.during)
		}
		restore()
		if got := runtime.GOMAXPROCS(0); got != c.before {
			t.Errorf("from %d, for %d: GOMAXPROCS %d after, want %d back", c.before, c.want, got, c.before)
		}
	}
}
