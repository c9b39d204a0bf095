package test

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	criucore "github.com/checkpoint-restore/go-criu/v8/crit/images/criu-core"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/pstree"
	"github.com/checkpoint-restore/go-criu/v8/crit/images/siginfo"
	"golang.org/x/sys/unix"

	"amber/internal/image"
)

// TestSignalAtRelease dumps zdtm/static/signal_restart, whose threads
// sleep in poll, nanosleep and read, and queues in the images a signal to
// each of five of them, as if it had come during the dump. The restore
// delivers them as the threads are released: each call must then end as
// the kernel ends it when a handler runs (EINTR, or a restart under
// SA_RESTART), and the sixth thread, which nothing interrupts, must sleep
// on. A restore that re-enters every call before release sends every
// interrupted thread back to sleep with its full timeout.
func TestSignalAtRelease(t *testing.T) {
	c := startCase(t, "signal_restart")
	c.mustDump()
	queue := map[string]unix.Signal{
		"poll-timeout": unix.SIGUSR1, "poll-forever": unix.SIGUSR1, "nanosleep": unix.SIGUSR1,
		"read-intr": unix.SIGUSR1, "read-restart": unix.SIGUSR2,
	}
	queueThreadSignals(t, c.images, c.pid, queue)
	c.mustRestoreDetached()
	c.mustPass()
}

// queueThreadSignals adds to the core image of each thread named in sigs
// (by its comm) a pending signal sent by tgkill from the process itself.
// Any manifest of the images is dropped: they are no longer what the dump
// wrote.
func queueThreadSignals(t *testing.T, images string, pid int, sigs map[string]unix.Signal) {
	t.Helper()
	dir, err := image.OpenDir(images)
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	tree, err := image.ReadFile(dir.PstreePath(), image.Pstree, func() *pstree.PstreeEntry { return &pstree.PstreeEntry{} })
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, tid := range tree[0].GetThreads() {
		path := dir.CorePath(int(tid))
		core, err := image.ReadOne(path, image.Core, func() *criucore.CoreEntry { return &criucore.CoreEntry{} })
		if err != nil {
			t.Fatal(err)
		}
		sig, ok := sigs[core.GetThreadCore().GetComm()]
		if !ok {
			continue
		}
		found++
		tc := core.GetThreadCore()
		if tc.SignalsP == nil {
			tc.SignalsP = &siginfo.SignalQueueEntry{}
		}
		tc.SignalsP.Signals = append(tc.SignalsP.Signals, &siginfo.SiginfoEntry{Siginfo: tkillSiginfo(sig, pid)})
		if err := image.WriteFile(path, image.Core, core); err != nil {
			t.Fatal(err)
		}
	}
	if found != len(sigs) {
		t.Fatalf("found %d of the %d threads named %v in the images", found, len(sigs), keys(sigs))
	}
	removeManifest(t, images)
}

// tkillSiginfo is the siginfo of sig sent by tgkill from pid, as root.
func tkillSiginfo(sig unix.Signal, pid int) []byte {
	var siTkill int32 = -6
	si := make([]byte, 128)
	binary.LittleEndian.PutUint32(si[0:], uint32(sig))
	binary.LittleEndian.PutUint32(si[8:], uint32(siTkill))
	binary.LittleEndian.PutUint32(si[16:], uint32(pid))
	return si
}

// removeManifest deletes amber's manifest of an images directory, if any,
// so that images changed on purpose restore as images written by CRIU do.
func removeManifest(t *testing.T, images string) {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(images, "amber-manifest*"))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if err := os.Remove(n); err != nil {
			t.Fatal(err)
		}
	}
}

func keys(m map[string]unix.Signal) string {
	var out []string
	for k, v := range m {
		out = append(out, k+"="+strconv.Itoa(int(v)))
	}
	return strings.Join(out, ",")
}
