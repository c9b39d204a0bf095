package files

import (
	"testing"

	"amber/internal/image"
	"amber/internal/image/imagetest"
)

// tempImages opens a fresh temporary directory as an images directory,
// closed when the test ends.
func tempImages(t *testing.T) image.Dir { return imagetest.Dir(t) }
