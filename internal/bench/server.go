package bench

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
)

// freeLoopbackPort is a TCP port of 127.0.0.1 that nothing listened on
// a moment ago.
func freeLoopbackPort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// startServer starts bin with args and --status-fd, its output in
// dir/name.log, and waits until it says it listens (CRIU's status
// byte: amber and CRIU both write it).
func startServer(dir, name, bin string, args ...string) (*exec.Cmd, error) {
	rd, wr, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer rd.Close()
	logPath := filepath.Join(dir, name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		wr.Close()
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(bin, append(args, "--status-fd", "3")...)
	cmd.Dir, cmd.Stdout, cmd.Stderr, cmd.ExtraFiles = dir, logf, logf, []*os.File{wr}
	err = cmd.Start()
	wr.Close()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	var b [1]byte
	if n, _ := rd.Read(b[:]); n != 1 {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, fmt.Errorf("%s did not get ready: %s", name, tail(logPath))
	}
	return cmd, nil
}

// loopbackArgs are the --address and --port options of a server or its
// client on port of 127.0.0.1.
func loopbackArgs(port int) []string {
	return []string{"--address", "127.0.0.1", "--port", strconv.Itoa(port)}
}
