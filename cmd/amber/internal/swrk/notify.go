package swrk

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/checkpoint-restore/go-criu/v8/rpc"
	"google.golang.org/protobuf/proto"
)

// notify sends CRIU's NOTIFY message for action (an action script's
// name) and waits for the client's answer, as CRIU's
// send_criu_rpc_script does. pid is sent where CRIU sends one
// (setup-namespaces, post-restore). The client's failure, or its
// closing the socket, is an error.
func (c *conn) notify(action string, pid int) error {
	return c.notifyFd(action, pid, -1)
}

// notifyFd is notify with descriptor fd attached to the message by
// SCM_RIGHTS (none if negative), as CRIU attaches the new pty master to
// orphan-pts-master.
func (c *conn) notifyFd(action string, pid, fd int) error {
	n := &rpc.CriuNotify{Script: proto.String(action)}
	if pid > 0 {
		n.Pid = proto.Int32(int32(pid))
	}
	msg := &rpc.CriuResp{Type: rpc.CriuReqType_NOTIFY.Enum(), Success: proto.Bool(true), Notify: n}
	if err := c.send(msg, fd); err != nil {
		return err
	}
	req, err := c.recv()
	if errors.Is(err, io.EOF) {
		return errors.New("the client closed the connection instead of answering")
	}
	if err != nil {
		return err
	}
	if req.GetType() != rpc.CriuReqType_NOTIFY || !req.GetNotifySuccess() {
		return fmt.Errorf("the client reported failure (answered %s, notify_success %v)", req.GetType(), req.GetNotifySuccess())
	}
	return externals(action, req.CriuReq)
}

// externals refuses the external objects a client names in its answer to
// query-ext-files: amber cannot treat any object as external yet.
func externals(action string, req *rpc.CriuReq) error {
	ext := req.GetOpts().GetExternal()
	if len(ext) == 0 {
		return nil
	}
	return fmt.Errorf("external objects %s: not supported yet (answer to %s)", strings.Join(ext, ", "), action)
}
