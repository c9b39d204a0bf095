package test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Small things a new user runs into.

// TestDumpAmberItself: dumping amber's own process, or a process amber
// runs under (its shell), is refused at once, saying so.
func TestDumpAmberItself(t *testing.T) {
	requireAmber(t)
	dir := t.TempDir()
	for _, tc := range []struct{ script, want string }{
		{"exec " + testEnv.amber + " dump -t $$ -D " + dir, "is amber itself"},
		{testEnv.amber + " dump -t $$ -D " + dir + "; echo status $?", "is an ancestor of amber"},
	} {
		out, _ := exec.Command("/bin/sh", "-c", tc.script).CombinedOutput()
		if !strings.Contains(string(out), tc.want) {
			t.Errorf("%s: %s; want an error saying %q", tc.script, out, tc.want)
		}
	}
}

// TestRestoreGrownOutput: the program's output file, which it has open
// for writing, grew after the dump (someone else appended to it): the
// restore warns and goes on.
func TestRestoreGrownOutput(t *testing.T) {
	c := startCase(t, "heap_globals")
	c.mustDump()
	f, err := os.OpenFile(c.out, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("appended after the dump\n")
	f.Close()
	c.mustRestoreDetached()
	log, _ := os.ReadFile(filepath.Join(c.images, "restore.log"))
	if !strings.Contains(string(log), c.out+" (id ") || !strings.Contains(string(log), "grew from") {
		t.Errorf("restore.log does not warn of %s growing:\n%s", c.out, log)
	}
	c.mustPass()
}
