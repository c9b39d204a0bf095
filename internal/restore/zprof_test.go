package restore

import (
	"os"
	"testing"

	"amber/internal/image"
	"amber/internal/proc"
)

func BenchmarkLoadImg(b *testing.B) {
	for i := 0; i < b.N; i++ {
		if _, err := load(image.Dir(os.Getenv("IMG"))); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPlanImg(b *testing.B) {
	tree, err := load(image.Dir(os.Getenv("IMG")))
	if err != nil {
		b.Fatal(err)
	}
	h, err := newHost(Options{ImagesDir: os.Getenv("IMG"), SkipFileCheck: os.Getenv("SKIP") != ""})
	if err != nil {
		b.Fatal(err)
	}
	h.stat = tree.root.files.StatAhead(h.stat)
	cur, err := proc.ReadSmaps(os.Getpid())
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := planTask(tree.root, h, &origin{current: cur}); err != nil {
			b.Fatal(err)
		}
	}
}
