package test

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestParseStat(t *testing.T) {
	s := "1234 (a) (b c) S 17 1234 1234 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 99 1000 10\n"
	got, err := parseStat(s)
	if err != nil {
		t.Fatal(err)
	}
	want := procStat{Comm: "a) (b c", State: 'S', Ppid: 17, Ticks: 10}
	if got != want {
		t.Errorf("parseStat = %+v; want %+v", got, want)
	}
	for _, bad := range []string{"", "1 (x S 1", "1 (x) S"} {
		if _, err := parseStat(bad); err == nil {
			t.Errorf("parseStat(%q) succeeded", bad)
		}
	}
}

func TestReadStatSelf(t *testing.T) {
	st, err := readStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if st.Ppid != os.Getppid() || !alive(os.Getpid()) {
		t.Errorf("readStat(self) = %+v; ppid want %d", st, os.Getppid())
	}
}

func TestProgramCommand(t *testing.T) {
	plain := program{name: "p"}.command("./p")
	if !reflect.DeepEqual(plain, []string{"./p"}) {
		t.Errorf("command = %q", plain)
	}
	limited := program{name: "p", nofile: 1024}.command("./p", "-x")
	want := []string{"/usr/bin/prlimit", "--nofile=1024:1024", "--", "./p", "-x"}
	if !reflect.DeepEqual(limited, want) {
		t.Errorf("command = %q; want %q", limited, want)
	}
}

func TestReadPidfile(t *testing.T) {
	dir := t.TempDir()
	for content, want := range map[string]int{"42": 42, "42\n": 42, "": 0, "x": 0, "-3": 0} {
		path := filepath.Join(dir, "pid")
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := readPidfile(path)
		if got != want || (err == nil) != (want != 0) {
			t.Errorf("readPidfile(%q) = %d, %v; want %d", content, got, err, want)
		}
	}
}
