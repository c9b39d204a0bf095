package files

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestSameTerminalOtherDevpts: a pty of another devpts instance with the
// same index, and so the same device number, is not this test's pty, as
// a container's /dev/pts/0 is not the host's. cttyHolder took such a
// process for the holder of amber's terminal when it went by the device
// number alone.
func TestSameTerminalOtherDevpts(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a devpts instance needs root")
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("no unshare(1)")
	}
	master, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(master)
	if err := unix.IoctlSetPointerInt(master, unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	index, err := unix.IoctlGetInt(master, unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	const most = 7 // fds 3 to 9, which sh can name
	if index >= most {
		t.Skipf("this test's pty is /dev/pts/%d; the other instance makes %d at most", index, most)
	}
	slave, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", index), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer slave.Close()
	// Another devpts instance on /dev/pts in a mount namespace of its own,
	// holding ptys 0 to index.
	var opens []string
	for fd := 3; fd <= 3+index; fd++ {
		opens = append(opens, fmt.Sprintf("exec %d<>/dev/pts/ptmx", fd))
	}
	script := "mount --make-rprivate / && mount -t devpts -o newinstance,ptmxmode=0666 devpts /dev/pts && " +
		strings.Join(opens, " && ") + " && echo ready && exec sleep 60"
	cmd := exec.Command("unshare", "-m", "sh", "-c", script)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("the other devpts: %q, %v", line, err)
	}
	var st, there unix.Stat_t
	if err := unix.Fstat(int(slave.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	path := fmt.Sprintf("/dev/pts/%d", index)
	other := cmd.Process.Pid
	if err := unix.Stat(fmt.Sprintf("/proc/%d/root%s", other, path), &there); err != nil || there.Rdev != st.Rdev {
		t.Fatalf("pid %d's %s: %v, device %#x, want %#x", other, path, err, there.Rdev, st.Rdev)
	}
	if !sameTerminal(os.Getpid(), path, &st) {
		t.Errorf("%s is not the same terminal for this process", path)
	}
	if sameTerminal(other, path, &st) {
		t.Errorf("pid %d's %s, of another devpts, taken for this test's", other, path)
	}
}
