// Package imagetest gives the tests of the packages that write and read
// images an images directory to work in.
package imagetest

import (
	"testing"

	"amber/internal/image"
)

// Dir opens a fresh temporary directory as an images directory, closed
// when the test ends.
func Dir(t testing.TB) image.Dir {
	t.Helper()
	return Open(t, t.TempDir())
}

// Open opens the images directory at path, closed when the test ends.
func Open(t testing.TB, path string) image.Dir {
	t.Helper()
	d, err := image.OpenDir(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}
