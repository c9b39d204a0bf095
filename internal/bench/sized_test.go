package bench

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestSplitSized reads the sizes in the names of the lazy and page
// server workloads and leaves the other names alone.
func TestSplitSized(t *testing.T) {
	rest, ws, err := splitSized([]string{"mem512", "lazy1g", "pageserver512", "migrate8", "lazy1g", "lazy64"})
	if err != nil {
		t.Fatal(err)
	}
	want := []sizedWorkload{{"lazy1g", kindLazy, 1024}, {"pageserver512", kindPageServer, 512}, {"lazy64", kindLazy, 64}}
	if !reflect.DeepEqual(rest, []string{"mem512", "migrate8"}) || !reflect.DeepEqual(ws, want) {
		t.Fatalf("got %v and %+v, want [mem512 migrate8] and %+v", rest, ws, want)
	}
	for _, bad := range []string{"lazy0", "pageserver0g", "lazy2048g", "lazy99999999999999999999"} {
		if _, _, err := splitSized([]string{bad}); err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("splitSized(%s) = %v, want an error naming it", bad, err)
		}
	}
	if rest, ws, err := splitSized([]string{"lazy", "lazy1k", "pageserver"}); err != nil || len(ws) != 0 || len(rest) != 3 {
		t.Errorf("names of another form: got %v, %v, %v; want them left to the other workloads", rest, ws, err)
	}
}

// TestParseAllIn reads the line amber lazy-pages logs at its end.
func TestParseAllIn(t *testing.T) {
	log := "(00.000120) lazy-pages: pid 7: 1073741824 bytes to bring in\n" +
		"(00.431000) lazy-pages: 1 processes, 4194304 bytes on faults, 1069547520 in the background, all in after 412.345678ms\n"
	if d, err := parseAllIn(log); err != nil || d != 412345678*time.Nanosecond {
		t.Fatalf("parseAllIn = %v, %v; want 412.345678ms", d, err)
	}
	if d, err := parseAllIn("(00.1) lazy-pages: 1 processes, 0 bytes on faults, 0 in the background, all in after 1.5s\n"); err != nil || d != 1500*time.Millisecond {
		t.Fatalf("parseAllIn = %v, %v; want 1.5s", d, err)
	}
	for _, bad := range []string{"", "(00.1) lazy-pages: pid 7: 4096 bytes to bring in\n", "lazy-pages: 1 processes, all in after soon\n"} {
		if _, err := parseAllIn(bad); err == nil {
			t.Errorf("parseAllIn(%q) succeeded", bad)
		}
	}
}

// TestBestAndMedian takes each figure's best and median over rounds.
func TestBestAndMedian(t *testing.T) {
	rs := []psRound{{ms(30), ms(10), ms(5)}, {ms(10), ms(40), ms(7)}, {ms(20), ms(20), ms(6)}}
	best, med := bestAndMedian(rs, func(r psRound) []time.Duration { return []time.Duration{r.local, r.server, r.restore} })
	if !reflect.DeepEqual(best, []time.Duration{ms(10), ms(10), ms(5)}) || !reflect.DeepEqual(med, []time.Duration{ms(20), ms(20), ms(6)}) {
		t.Fatalf("best %v, median %v", best, med)
	}
}

// TestWriteLazy lays out amber's and CRIU's rounds and compares them.
func TestWriteLazy(t *testing.T) {
	w := sizedWorkload{"lazy1g", kindLazy, 1024}
	byTool := map[string][]lazyRound{
		"amber": {{dump: ms(300), restore: ms(1000), lazyRestore: ms(12), daemonAllIn: ms(150), waited: ms(200)},
			{dump: ms(500), restore: ms(1200), lazyRestore: ms(14), daemonAllIn: ms(170), waited: ms(240)}},
		"criu": {{dump: ms(600), restore: ms(2000), lazyRestore: ms(10), waited: ms(440)},
			{dump: ms(700), restore: ms(2200), lazyRestore: ms(11), waited: ms(520)}},
	}
	var b strings.Builder
	if err := writeLazy(&b, w, []tool{{name: "amber"}, {name: "criu"}}, byTool); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(b.String(), "\n")
	for i, want := range [][]string{
		{"workload", "tool", "of N", "dump", "restore", "lazy restore", "all in (daemon)", "waited", "waited/restore"},
		{"lazy1g (1024 MiB)", "amber", "best of 2", "300.0 ms", "1000.0 ms", "12.0 ms", "150.0 ms", "200.0 ms", "0.20"},
		{"median", "400.0 ms", "1100.0 ms", "13.0 ms", "160.0 ms", "220.0 ms", "0.20"},
		{"criu", "best of 2", "600.0 ms", "2000.0 ms", "10.0 ms", " - ", "440.0 ms", "0.22"},
	} {
		for _, cell := range want {
			if !strings.Contains(lines[i], cell) {
				t.Errorf("line %d %q lacks %q", i, lines[i], cell)
			}
		}
	}
	if !strings.Contains(b.String(), "amber/criu waited: best 0.45, median 0.46\n") {
		t.Errorf("no comparison with CRIU:\n%s", b.String())
	}
}

// TestWritePageServer lays out the dumps to disk and to the page server.
func TestWritePageServer(t *testing.T) {
	w := sizedWorkload{"pageserver1g", kindPageServer, 1024}
	byTool := map[string][]psRound{"amber": {{ms(400), ms(300), ms(900)}, {ms(600), ms(700), ms(1100)}, {ms(500), ms(500), ms(1000)}}}
	var b strings.Builder
	if err := writePageServer(&b, w, []tool{{name: "amber"}}, byTool); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(b.String(), "\n")
	for i, want := range [][]string{
		{"workload", "tool", "of N", "dump to disk", "to page server", "server/disk", "restore"},
		{"pageserver1g (1024 MiB)", "amber", "best of 3", "400.0 ms", "300.0 ms", "0.75", "900.0 ms"},
		{"median", "500.0 ms", "500.0 ms", "1.00", "1000.0 ms"},
	} {
		for _, cell := range want {
			if !strings.Contains(lines[i], cell) {
				t.Errorf("line %d %q lacks %q", i, lines[i], cell)
			}
		}
	}
	if strings.Contains(lines[2], "amber") {
		t.Errorf("the median row repeats the tool: %q", lines[2])
	}
}

// TestToolsOfRound puts amber and CRIU in turns first.
func TestToolsOfRound(t *testing.T) {
	e := env{amber: "/a", criu: "/c"}
	for i, want := range map[int]string{1: "amber criu", 2: "criu amber", 3: "amber criu"} {
		var got []string
		for _, tl := range e.toolsOfRound(i) {
			got = append(got, tl.name)
		}
		if strings.Join(got, " ") != want {
			t.Errorf("round %d: %v, want %s", i, got, want)
		}
	}
	if ts := (env{amber: "/a"}).toolsOfRound(2); len(ts) != 1 || ts[0].bin != "/a" {
		t.Errorf("without CRIU: %+v", ts)
	}
}
