package files

import (
	"os"
	"path/filepath"
	"testing"
)

// TestOnProcfs: the times of /proc files mean nothing to restore, those
// of ordinary files do.
func TestOnProcfs(t *testing.T) {
	tmp := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(tmp, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]bool{"/proc/self/maps": true, "/proc/meminfo": true, tmp: false, "/nonexistent": false} {
		if got := onProcfs(nil, path); got != want {
			t.Errorf("onProcfs(%s) = %v, want %v", path, got, want)
		}
	}
}
