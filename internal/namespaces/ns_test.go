package namespaces

import (
	"os"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"

	"amber/internal/image"
)

// inFreshNamespaces runs fn on a thread of its own in new UTS and IPC
// namespaces, with the thread's TID, by which /proc names them, and
// fails t with fn's error. The thread ends with it.
func inFreshNamespaces(t *testing.T, fn func(tid int) error) {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("needs root")
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		if err := unix.Unshare(unix.CLONE_NEWUTS | unix.CLONE_NEWIPC); err != nil {
			t.Errorf("unshare: %v", err)
			return
		}
		if err := fn(unix.Gettid()); err != nil {
			t.Error(err)
		}
	}()
	<-done
}

// TestUTSAndIPCRoundTrip dumps the names and IPC settings of a namespace,
// changes them, restores them, and finds them as they were.
func TestUTSAndIPCRoundTrip(t *testing.T) {
	dir, err := image.OpenDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	inFreshNamespaces(t, func(tid int) error {
		set := func(host, msgmax, sem string) error {
			if err := unix.Sethostname([]byte(host)); err != nil {
				return err
			}
			if err := writeSysctl("kernel/msgmax", msgmax); err != nil {
				return err
			}
			return writeSysctl(semSysctl, sem)
		}
		if err := set("dumped", "4321", "100 200 30 40"); err != nil {
			return err
		}
		if err := dumpUTS(dir, 9, tid); err != nil {
			return err
		}
		if err := dumpIPC(dir, 10, tid); err != nil {
			return err
		}
		if err := set("changed", "9999", "1 2 3 4"); err != nil {
			return err
		}
		if err := restoreUTS(dir, 9, tid); err != nil {
			return err
		}
		if err := restoreIPC(dir, 10, tid); err != nil {
			return err
		}
		var u unix.Utsname
		if err := unix.Uname(&u); err != nil {
			return err
		}
		if got := unix.ByteSliceToString(u.Nodename[:]); got != "dumped" {
			t.Errorf("host name %q after restore, want %q", got, "dumped")
		}
		for name, want := range map[string]string{"kernel/msgmax": "4321", semSysctl: "100\t200\t30\t40"} {
			if got, err := readSysctl(name); err != nil || got != want {
				t.Errorf("%s: %q (%v) after restore, want %q", name, got, err, want)
			}
		}
		return nil
	})
}
