package proc

import "testing"

func TestUnescapeMountinfo(t *testing.T) {
	for in, want := range map[string]string{
		`/mnt/a\040b\134c`: `/mnt/a b\c`,
		`/plain`:           `/plain`,
		`/tab\011end`:      "/tab\tend",
		`/short\04`:        `/short\04`, // not three digits: kept
		`/bad\089`:         `/bad\089`,  // not octal: kept
	} {
		if got := UnescapeMountinfo(in); got != want {
			t.Errorf("UnescapeMountinfo(%q) = %q, want %q", in, got, want)
		}
	}
}
