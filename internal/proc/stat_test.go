package proc

import (
	"errors"
	"io/fs"
	"os"
	"strings"
	"syscall"
	"testing"
)

// Captured from Linux 6.18: a task that renamed itself with
// prctl(PR_SET_NAME, "a) (b c)) x"), and kthreadd.
const (
	statOddName = "9136 (a) (b c)) x) R 9133 9133 3151 0 -1 4194304 2895 6530 0 0 2 0 4 0 20 0 1 0 45322 17149952 3429 18446744073709551615 94763669807104 94763669807445 140721991311072 0 0 0 0 16781312 2 0 0 0 17 0 0 0 0 0 0 94763669818800 94763669819416 94763975331840 140721991313370 140721991313675 140721991313675 140721991315407 0\n"
	statKthread = "2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 0 0 0 20 0 1 0 24 0 0 18446744073709551615 0 0 0 0 0 0 0 2147483647 0 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n"
)

func TestParseStatSample(t *testing.T) {
	st, err := ParseStat([]byte(statOddName))
	if err != nil {
		t.Fatal(err)
	}
	want := Stat{
		Pid: 9136, Comm: "a) (b c)) x", State: 'R', PPid: 9133, Pgrp: 9133, Session: 3151,
		TtyNr: 0, Tpgid: -1, Flags: 4194304, Priority: 20, Nice: 0, NumThreads: 1, StartTime: 45322,
		StartCode: 94763669807104, EndCode: 94763669807445, StartStack: 140721991311072,
		ExitSignal: 17,
		StartData:  94763669818800, EndData: 94763669819416, StartBrk: 94763975331840,
		ArgStart: 140721991313370, ArgEnd: 140721991313675, EnvStart: 140721991313675, EnvEnd: 140721991315407,
	}
	if st != want {
		t.Errorf("got\n%+v\nwant\n%+v", st, want)
	}
}

func TestParseStatKthread(t *testing.T) {
	st, err := ParseStat([]byte(statKthread))
	if err != nil {
		t.Fatal(err)
	}
	if st.Pid != 2 || st.Comm != "kthreadd" || st.State != 'S' || st.StartStack != 0 || st.ExitSignal != 0 {
		t.Errorf("got %+v", st)
	}
}

func TestParseStatErrors(t *testing.T) {
	fields := strings.Fields(statOddName[strings.LastIndexByte(statOddName, ')')+1:])
	withField := func(n int, v string) string {
		f := append([]string(nil), fields...)
		f[n-3] = v
		return "1 (x) " + strings.Join(f, " ")
	}
	for _, tc := range []struct{ text, want string }{
		{"", "field 2 (comm)"},
		{"1 x) (", "field 2 (comm)"},
		{"x (a) R", "field 1 (pid)"},
		{"1 (a) R 0 0", "fields, want at least 52"},
		{withField(3, "RS"), "field 3 (state)"},
		{withField(28, "-1"), "field 28 (startstack)"},
		{withField(4, "99999999999"), "field 4 (ppid)"},
		{withField(52, "x"), "field 52 (exit_code)"},
	} {
		_, err := ParseStat([]byte(tc.text))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseStat(%q) = %v, want error containing %q", tc.text, err, tc.want)
		}
	}
}

func TestReadStatSelf(t *testing.T) {
	st, err := ReadStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if st.Pid != os.Getpid() || st.PPid != os.Getppid() || st.Pgrp != syscall.Getpgrp() {
		t.Errorf("ids: %+v", st)
	}
	if st.NumThreads < 1 || st.StartStack == 0 || st.ArgStart >= st.ArgEnd || st.EnvStart > st.EnvEnd {
		t.Errorf("fields: %+v", st)
	}
	tst, err := ReadTaskStat(os.Getpid(), os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if tst.Pid != st.Pid || tst.StartStack != st.StartStack {
		t.Errorf("task stat %+v differs from stat %+v", tst, st)
	}
}

func TestReadStatNoProcess(t *testing.T) {
	_, err := ReadStat(noSuchPid)
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "/proc/1073741824/stat") {
		t.Errorf("ReadStat(no such pid) = %v, want fs.ErrNotExist naming the path", err)
	}
}

func FuzzParseStat(f *testing.F) {
	f.Add([]byte(statOddName))
	f.Add([]byte(statKthread))
	f.Add([]byte("1 (a) R"))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := ParseStat(b)
		if err == nil && strings.Count(string(b), "(") == 0 {
			t.Fatalf("parsed %+v without a comm", st)
		}
	})
}
