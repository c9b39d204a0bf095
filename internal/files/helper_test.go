package files

import (
	"testing"

	"amber/internal/image"
)

// tempImages opens a fresh temporary directory as an images directory,
// closed when the test ends.
func tempImages(t *testing.T) image.Dir {
	t.Helper()
	d, err := image.OpenDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}
