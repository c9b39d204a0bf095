package swrk

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"syscall"

	"github.com/checkpoint-restore/go-criu/v8/rpc"
	"google.golang.org/protobuf/proto"
)

// pageServer answers PAGE_SERVER and PAGE_SERVER_CHLD (kind) as CRIU's
// service does: it starts a page server for one dump, `amber
// page-server` in a session of its own that outlives this one, and
// answers, with its PID and port, once it listens (or serves ps.fd).
// The page server writes the request's log; CRIU answers both kinds as
// PAGE_SERVER.
func (s *session) pageServer(kind rpc.CriuReqType, o *rpc.CriuOpts) (*rpc.CriuResp, error) {
	const answer = rpc.CriuReqType_PAGE_SERVER
	st, err := translate(kind, o, s.c.peer)
	if err != nil {
		// Logged where the log would have been.
		_, _, _, err = s.begin(kind, o)
		return failure(answer, err)
	}
	pid, err := startPageServer(st)
	if err != nil {
		return failure(answer, fmt.Errorf("%s: %w", kind, err))
	}
	return &rpc.CriuResp{Type: answer.Enum(), Success: proto.Bool(true),
		Ps: &rpc.CriuPageServerInfo{Pid: proto.Int32(int32(pid)), Port: proto.Int32(st.psPort)}}, nil
}

// startPageServer starts amber page-server as st asks and returns its
// PID once it is ready (--status-fd), or an error naming its exit.
func startPageServer(st settings) (int, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	defer r.Close()
	defer w.Close() // closed once the page server has it, or on failure
	args := []string{"page-server", "-D", st.imagesDir, "-v" + strconv.Itoa(st.logLevel), "--status-fd", "3"}
	cmd := exec.Command("/proc/self/exe")
	cmd.ExtraFiles = []*os.File{w}
	if st.psFdSet {
		sock, err := dupPsFd(st.psFd)
		if err != nil {
			return 0, err
		}
		defer sock.Close()
		cmd.ExtraFiles = append(cmd.ExtraFiles, sock)
		args = append(args, "--ps-socket", "4")
	} else {
		host, port, _ := net.SplitHostPort(st.psListen)
		args = append(args, "--address", host, "--port", port)
	}
	if st.parentImg != "" {
		args = append(args, "--prev-images-dir", st.parentImg)
	}
	if st.logPath != "" {
		args = append(args, "-o", st.logPath)
	} else {
		cmd.Stderr = os.Stderr
	}
	cmd.Args = append([]string{"amber"}, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	w.Close()
	if err != nil {
		return 0, fmt.Errorf("start amber page-server: %w", err)
	}
	var b [1]byte
	if n, _ := r.Read(b[:]); n == 1 {
		pid := cmd.Process.Pid
		cmd.Process.Release()
		return pid, nil
	}
	werr := cmd.Wait()
	if werr == nil {
		werr = errors.New("it exited")
	}
	return 0, fmt.Errorf("amber page-server did not get ready: %w (its log: %s)", werr, logName(st))
}

// logName names where a request's log goes.
func logName(st settings) string {
	if st.logPath == "" {
		return "stderr"
	}
	return st.logPath
}
