package proc

import (
	"errors"
	"io/fs"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// limitsSample is captured from Linux 6.18; "Max nice priority" and
// "Max realtime priority" have no units, so their rows end after the hard
// limit's padding.
const limitsSample = `Limit                     Soft Limit           Hard Limit           Units     
Max cpu time              unlimited            unlimited            seconds   
Max file size             unlimited            unlimited            bytes     
Max data size             unlimited            unlimited            bytes     
Max stack size            8388608              unlimited            bytes     
Max core file size        0                    unlimited            bytes     
Max resident set          unlimited            unlimited            bytes     
Max processes             96365                96365                processes 
Max open files            20000                20000                files     
Max locked memory         8388608              8388608              bytes     
Max address space         unlimited            unlimited            bytes     
Max file locks            unlimited            unlimited            locks     
Max pending signals       96365                96365                signals   
Max msgqueue size         819200               819200               bytes     
Max nice priority         0                    0                    
Max realtime priority     0                    0                    
Max realtime timeout      unlimited            unlimited            us        
`

func TestParseLimitsSample(t *testing.T) {
	limits, err := ParseLimits(strings.NewReader(limitsSample))
	if err != nil {
		t.Fatal(err)
	}
	if len(limits) != 16 {
		t.Fatalf("len = %d, want 16", len(limits))
	}
	for _, want := range []Limit{
		{"Max cpu time", unix.RLIMIT_CPU, unix.RLIM_INFINITY, unix.RLIM_INFINITY},
		{"Max stack size", unix.RLIMIT_STACK, 8388608, unix.RLIM_INFINITY},
		{"Max core file size", unix.RLIMIT_CORE, 0, unix.RLIM_INFINITY},
		{"Max open files", unix.RLIMIT_NOFILE, 20000, 20000},
		{"Max nice priority", unix.RLIMIT_NICE, 0, 0},
		{"Max realtime timeout", unix.RLIMIT_RTTIME, unix.RLIM_INFINITY, unix.RLIM_INFINITY},
	} {
		if got := limits[want.Resource]; got != want {
			t.Errorf("limits[%d] = %+v, want %+v", want.Resource, got, want)
		}
	}
}

func TestParseLimitsErrors(t *testing.T) {
	lines := strings.SplitAfter(limitsSample, "\n")
	without := func(i int) string { return strings.Join(append(lines[:i:i], lines[i+1:]...), "") }
	for _, tc := range []struct{ text, want string }{
		{without(0), "line 1: header"},
		{without(8), `no "Max open files" row`},
		{limitsSample + lines[8], `line 18: "Max open files": repeated`},
		{limitsSample + "Max coffee cups  1  2  cups\n", `line 18: unknown limit "Max coffee cups"`},
		{strings.Replace(limitsSample, "20000                20000", "20000 lots", 1), `line 9: "Max open files`},
		{strings.Replace(limitsSample, "8388608              unlimited", "8388608 -1", 1), `line 5: "Max stack size": `},
		{lines[0] + "\n", `line 2: unknown limit ""`},
	} {
		_, err := ParseLimits(strings.NewReader(tc.text))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("got %v, want error containing %q", err, tc.want)
		}
	}
}

func TestReadLimitsSelf(t *testing.T) {
	limits, err := ReadLimits(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	for res, l := range limits {
		var want unix.Rlimit
		if err := unix.Getrlimit(res, &want); err != nil {
			t.Fatal(err)
		}
		if l.Resource != res || l.Soft != want.Cur || l.Hard != want.Max {
			t.Errorf("limits[%d] = %+v, getrlimit says %+v", res, l, want)
		}
	}
}

func TestReadLimitsNoProcess(t *testing.T) {
	if _, err := ReadLimits(noSuchPid); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadLimits(no such pid) = %v, want fs.ErrNotExist", err)
	}
}

func FuzzParseLimits(f *testing.F) {
	f.Add(limitsSample)
	f.Add("Limit\nMax cpu time 1 2\n")
	f.Fuzz(func(t *testing.T, text string) {
		limits, err := ParseLimits(strings.NewReader(text))
		if err != nil {
			return
		}
		for res, l := range limits {
			if l.Resource != res || l.Name == "" {
				t.Fatalf("limits[%d] = %+v", res, l)
			}
		}
	})
}
