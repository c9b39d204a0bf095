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

// openAt opens the images directory at path, closed when the test ends.
func openAt(t *testing.T, path string) image.Dir {
	t.Helper()
	d, err := image.OpenDir(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}
