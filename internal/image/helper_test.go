package image_test

import (
	"testing"

	"amber/internal/image"
)

// openTemp opens a fresh temporary directory as an images directory,
// closed when the test ends.
func openTemp(t *testing.T) image.Dir {
	t.Helper()
	d, err := image.OpenDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}
