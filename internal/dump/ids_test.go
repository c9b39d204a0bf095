package dump

import (
	"math/rand"
	"os"
	"os/exec"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// TestKobjIDs numbers the objects of processes that share none (children)
// and of threads that share all (this process's), in random order: the
// search in kcmp's order must find every sharer and no false one.
func TestKobjIDs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("kcmp of other processes needs root")
	}
	var pids []int
	for range 20 {
		cmd := exec.Command("sleep", "60")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		pids = append(pids, cmd.Process.Pid)
	}
	tids := threadsOfSelf(t, 5)
	all := append(append([]int{}, pids...), tids...)
	for round := range 5 {
		rand.New(rand.NewSource(int64(round))).Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
		k := newKobjIDs()
		for _, typ := range []int{kcmpVM, kcmpFiles, kcmpFS, kcmpSighand} {
			ids := map[int]uint32{}
			for _, pid := range all {
				ids[pid] = k.id(typ, pid)
			}
			seen := map[uint32]int{}
			for _, pid := range pids {
				if other, ok := seen[ids[pid]]; ok {
					t.Fatalf("type %d: pids %d and %d share id %d", typ, pid, other, ids[pid])
				}
				seen[ids[pid]] = pid
			}
			for _, tid := range tids {
				if ids[tid] != ids[tids[0]] {
					t.Fatalf("type %d: threads %d and %d of one process got ids %d and %d", typ, tid, tids[0], ids[tid], ids[tids[0]])
				}
				if _, ok := seen[ids[tid]]; ok {
					t.Fatalf("type %d: thread %d shares its id with a child", typ, tid)
				}
			}
		}
	}
}

// threadsOfSelf returns the ids of n threads of this process, kept alive
// (locked, parked) until the test ends.
func threadsOfSelf(t *testing.T, n int) []int {
	ch := make(chan int)
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	for range n {
		go func() {
			runtime.LockOSThread()
			ch <- unix.Gettid()
			<-done
		}()
	}
	tids := make([]int, n)
	for i := range tids {
		tids[i] = <-ch
	}
	return tids
}
