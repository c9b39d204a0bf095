package proc

import (
	"testing"

	"golang.org/x/sys/unix"
)

func TestParseLock(t *testing.T) {
	tests := []struct {
		line string
		want Lock
	}{
		{"1: POSIX  ADVISORY  WRITE 11837 fe:00:10355014 10 14",
			Lock{Kind: "POSIX", Mode: "ADVISORY", Type: "WRITE", Pid: 11837, Dev: unix.Mkdev(0xfe, 0), Ino: 10355014, Start: 10, End: 14}},
		{"\t1: OFDLCK ADVISORY  READ -1 08:1f:7 0 EOF",
			Lock{Kind: "OFDLCK", Mode: "ADVISORY", Type: "READ", Pid: -1, Dev: unix.Mkdev(8, 0x1f), Ino: 7, End: ToEOF}},
		{"12: -> FLOCK  ADVISORY  WRITE 40 00:2a:99 0 EOF",
			Lock{Kind: "FLOCK", Mode: "ADVISORY", Type: "WRITE", Pid: 40, Dev: unix.Mkdev(0, 0x2a), Ino: 99, End: ToEOF, Blocked: true}},
		{"3: LEASE  BREAKING  READ 5 103:02:1 0 EOF",
			Lock{Kind: "LEASE", Mode: "BREAKING", Type: "READ", Pid: 5, Dev: unix.Mkdev(0x103, 2), Ino: 1, End: ToEOF}},
	}
	for _, tt := range tests {
		got, err := ParseLock(tt.line)
		if err != nil || got != tt.want {
			t.Errorf("ParseLock(%q) = %+v, %v; want %+v", tt.line, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "1: POSIX ADVISORY WRITE 1 fe:00:1 0", "1: POSIX ADVISORY WRITE x fe:00:1 0 EOF",
		"1: POSIX ADVISORY WRITE 1 fe:00 0 EOF", "1: POSIX ADVISORY WRITE 1 fe:00:1 9 3", "POSIX ADVISORY WRITE 1 fe:00:1 0 EOF x"} {
		if l, err := ParseLock(bad); err == nil {
			t.Errorf("ParseLock(%q) = %+v, want an error", bad, l)
		}
	}
}

func TestFdInfoLocks(t *testing.T) {
	fi, err := parseFdinfo("pos:\t0\nflags:\t0100002\nmnt_id:\t26\nino:\t5\nlock:\t1: POSIX  ADVISORY  WRITE 9 fe:00:5 10 14\nlock:\t2: POSIX  ADVISORY  READ 9 fe:00:5 100 EOF\n")
	if err != nil {
		t.Fatal(err)
	}
	locks, err := fi.Locks()
	if err != nil || len(locks) != 2 || locks[0].End != 14 || locks[1].Type != "READ" || locks[1].End != ToEOF {
		t.Errorf("Locks() = %+v, %v", locks, err)
	}
	fi.ExtraLines = append(fi.ExtraLines, "lock:\t3: POSIX")
	if _, err := fi.Locks(); err == nil {
		t.Error("Locks() of a bad line: no error")
	}
}
