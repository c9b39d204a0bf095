package test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestCrit checks amber's images with an independent reader: crit must
// decode every image of a dump except the raw pages, for a single process
// and for a tree with threads-free children, pipes with data in flight and
// pages shared copy-on-write, and for unix sockets with queued messages,
// a FIFO with data, unlinked files (sk-queues, fifo-data, remap-fpath,
// ghost-file images), ptys with queued bytes (tty-info, tty-data),
// inet sockets with TCP connections (tcp-stream), seccomp filters
// (seccomp, and the seccomp fields of core) and file locks (filelocks).
func TestCrit(t *testing.T) {
	crit := critCommand(t)
	for _, name := range []string{"heap_globals", "fork_cow", "threads_tls", "sk_unix_listen", "fifo00", "unlink_fstat00", "pty00", "tcp_listen00", "tcp_established00", "seccomp_chain", "file_locks_mix",
		"link_remap", "inotify_ghost", "fanotify_marks", "ns_files"} {
		t.Run(name, func(t *testing.T) {
			seen := critDecodesDump(t, crit, name)
			if name == "seccomp_chain" && !seen["seccomp.img"] {
				t.Errorf("no seccomp.img in the dump of %s", name)
			}
			if name == "file_locks_mix" && !seen["filelocks.img"] {
				t.Errorf("no filelocks.img in the dump of %s", name)
			}
			if (name == "link_remap" || name == "inotify_ghost") && !seen["remap-fpath.img"] {
				t.Errorf("no remap-fpath.img in the dump of %s", name)
			}
		})
	}
}

// critDecodesDump dumps program name and decodes each image with crit;
// it returns the names of the images.
func critDecodesDump(t *testing.T, crit []string, name string) map[string]bool {
	c := startCase(t, name)
	// No restore follows: a network lock would stay behind, as CRIU's
	// does, dropping the packets of whatever gets the ports again.
	c.mustDump("--network-lock", "skip")
	return critDecodesDir(t, crit, c.images)
}

// critDecodesDir decodes each image in dir with crit and returns their
// names. The raw images, pages and the tmpfs archives (gzip, as CRIU's),
// are not protobuf: crit cannot decode CRIU's either, so they are only
// checked to be what their names say.
func critDecodesDir(t *testing.T, crit []string, dir string) map[string]bool {
	t.Helper()
	imgs, err := filepath.Glob(filepath.Join(dir, "*.img"))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, img := range imgs {
		name := filepath.Base(img)
		seen[name] = true
		switch {
		case strings.HasPrefix(name, "pages-"):
			continue
		case strings.HasSuffix(name, ".tar.gz.img"):
			if b, err := os.ReadFile(img); err != nil || len(b) < 2 || b[0] != 0x1f || b[1] != 0x8b {
				t.Errorf("%s is not a gzip archive (%v)", name, err)
			}
			continue
		}
		args := append(crit[1:len(crit):len(crit)], "decode", "-i", img)
		if out, err := exec.Command(crit[0], args...).CombinedOutput(); err != nil {
			t.Errorf("crit decode -i %s: %v\n%s", name, err, out)
		}
	}
	if !seen["inventory.img"] {
		t.Errorf("no inventory.img among %v", imgs)
	}
	return seen
}
