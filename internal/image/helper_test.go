package image_test

import (
	"testing"

	"amber/internal/image"
	"amber/internal/image/imagetest"
)

// openTemp opens a fresh temporary directory as an images directory,
// closed when the test ends.
func openTemp(t *testing.T) image.Dir { return imagetest.Dir(t) }

// openAt opens the images directory at path, closed when the test ends.
func openAt(t *testing.T, path string) image.Dir { return imagetest.Open(t, path) }
