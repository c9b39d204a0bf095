package swrk

import (
	"errors"
	"fmt"
	"io"
	"reflect"

	"github.com/checkpoint-restore/go-criu/v8/rpc"
	"golang.org/x/sys/unix"
)

// conn is the service end of a SOCK_SEQPACKET socket: one protobuf
// message per packet, as CRIU's cr-service.c reads and writes them.
type conn struct {
	fd   int
	peer int // the client's PID (SO_PEERCRED)
}

// newConn checks that fd is a SOCK_SEQPACKET socket and finds its peer.
// The descriptor is made close-on-exec: a restore's stub must not hold
// the client's connection open after amber exits.
func newConn(fd int) (*conn, error) {
	typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil {
		return nil, fmt.Errorf("descriptor %d: not a socket: %w", fd, err)
	}
	if typ != unix.SOCK_SEQPACKET {
		return nil, fmt.Errorf("descriptor %d: socket of type %d, want SOCK_SEQPACKET (%d)", fd, typ, unix.SOCK_SEQPACKET)
	}
	cred, err := unix.GetsockoptUcred(fd, unix.SOL_SOCKET, unix.SO_PEERCRED)
	if err != nil {
		return nil, fmt.Errorf("descriptor %d: SO_PEERCRED: %w", fd, err)
	}
	unix.CloseOnExec(fd)
	return &conn{fd: fd, peer: int(cred.Pid)}, nil
}

// request is one decoded request, with the fields it has that amber's
// rpc.proto does not define.
type request struct {
	*rpc.CriuReq
	unknown []string
}

// recv reads one request; io.EOF when the client closed its end, an
// error wrapping errBadRequest when it cannot be decoded.
func (c *conn) recv() (request, error) {
	n, err := retry(func() (int, error) {
		n, _, err := unix.Recvfrom(c.fd, nil, unix.MSG_PEEK|unix.MSG_TRUNC)
		return n, err
	})
	if err != nil {
		return request{}, fmt.Errorf("read request: %w", err)
	}
	buf := make([]byte, n)
	n, err = retry(func() (int, error) {
		n, _, err := unix.Recvfrom(c.fd, buf, 0)
		return n, err
	})
	switch {
	case err != nil:
		return request{}, fmt.Errorf("read request: %w", err)
	case n == 0:
		return request{}, io.EOF
	}
	req := &rpc.CriuReq{}
	if err := req.UnmarshalVT(buf[:n]); err != nil {
		return request{}, fmt.Errorf("%w: decode request of %d bytes: %w", errBadRequest, n, err)
	}
	return request{req, unknownFields(buf[:n], reflect.TypeFor[rpc.CriuReq](), "")}, nil
}

// send writes one response, with descriptor fd attached by SCM_RIGHTS
// unless fd is negative.
func (c *conn) send(resp *rpc.CriuResp, fd int) error {
	b, err := resp.MarshalVT()
	if err != nil {
		return fmt.Errorf("encode response: %w", err)
	}
	var oob []byte
	if fd >= 0 {
		oob = unix.UnixRights(fd)
	}
	_, err = retry(func() (int, error) {
		return unix.SendmsgN(c.fd, b, oob, nil, unix.MSG_NOSIGNAL)
	})
	if err != nil {
		return fmt.Errorf("send %s response: %w", resp.GetType(), err)
	}
	return nil
}

// retry runs a system call again while a signal interrupts it.
func retry(call func() (int, error)) (int, error) {
	for {
		n, err := call()
		if !errors.Is(err, unix.EINTR) {
			return n, err
		}
	}
}
