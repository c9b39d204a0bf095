// Package swrk serves CRIU's RPC protocol, as `criu swrk FD` does: the
// way container engines (runc, Podman through runc, go-criu's client)
// drive a checkpoint tool. The client makes a SOCK_SEQPACKET socket pair,
// starts `amber swrk N` with one end as descriptor N, and sends one
// rpc.CriuReq per packet: VERSION, CHECK, FEATURE_CHECK, DUMP, RESTORE,
// PRE_DUMP (followed, in the same session, by more of them and the
// dump on top, as in CRIU's service), SINGLE_PRE_DUMP, PAGE_SERVER or
// PAGE_SERVER_CHLD (an amber page-server started for one dump).
// amber answers each with an rpc.CriuResp and, when the client asked for
// notify_scripts, stops at CRIU's action-script points with a NOTIFY
// round trip. Every request gets an answer: an unknown request type, an
// option amber does not know or cannot honour, a failed dump or restore
// is a response with success false and cr_errmsg saying why, never a
// closed socket.
//
// The package translates requests into the options of dump.Run and
// restore.Run, the entry points of `amber dump` and `amber restore`; it
// dumps and restores nothing itself.
package swrk

import (
	"errors"
	"fmt"
	"io"

	"github.com/checkpoint-restore/go-criu/v8/rpc"
	"google.golang.org/protobuf/proto"
)

// CRIU's interface level amber answers VERSION with: the CRIU release
// whose image format and RPC amber speaks. Engines check it (Podman
// wants at least 3.11).
const (
	criuMajor = 4
	criuMinor = 2
)

// Serve serves one session on descriptor fd: requests until one that does
// not ask to keep the connection open (CRIU's keep_open), or until the
// client closes it. The error is the last request's failure, or the
// session's own.
func Serve(fd int, version string) error {
	c, err := newConn(fd)
	if err != nil {
		return fmt.Errorf("swrk: %w", err)
	}
	s := &session{c: c, version: version}
	for served := 0; ; served++ {
		keep, err := s.serveOne()
		switch {
		case errors.Is(err, io.EOF) && served > 0:
			return nil
		case errors.Is(err, io.EOF):
			return errors.New("swrk: the client closed the connection before any request")
		case err != nil || !keep:
			return err
		}
	}
}

// serveOne reads one request and answers it. keep says whether the
// session goes on: the request succeeded, and the client asked to go on
// (keep_open) or it was a PRE_DUMP, which CRIU's service follows with
// the next pre-dump or the dump.
func (s *session) serveOne() (keep bool, err error) {
	req, err := s.c.recv()
	var resp *rpc.CriuResp
	switch {
	case errors.Is(err, errBadRequest):
		resp, err = failure(rpc.CriuReqType_EMPTY, err)
	case errors.Is(err, io.EOF):
		return false, err
	case err != nil:
		return false, fmt.Errorf("swrk: %w", err)
	default:
		resp, err = s.handle(req)
	}
	if serr := s.c.send(resp, -1); serr != nil {
		return false, errors.Join(err, fmt.Errorf("swrk: %w", serr))
	}
	s.preDumped = err == nil && req.GetType() == rpc.CriuReqType_PRE_DUMP
	return err == nil && (req.GetKeepOpen() || s.preDumped), err
}

// session is one client's connection.
type session struct {
	c       *conn
	version string // amber's, sent as gitid
	// preDumped: the last request was a PRE_DUMP, and only a PRE_DUMP or
	// a DUMP may follow it.
	preDumped bool
}

// handle runs one request and returns its response, with the error that
// made it fail, if any.
func (s *session) handle(req request) (*rpc.CriuResp, error) {
	kind := req.GetType()
	if len(req.unknown) > 0 {
		return failure(kind, fmt.Errorf("%w: request %s: %s", errBadRequest, kind, describeUnknown(req.unknown)))
	}
	if req.GetKeepOpen() && kind != rpc.CriuReqType_VERSION && kind != rpc.CriuReqType_FEATURE_CHECK && kind != rpc.CriuReqType_SINGLE_PRE_DUMP {
		return failure(kind, fmt.Errorf("%w: keep_open: not allowed with a %s request (only VERSION, FEATURE_CHECK and SINGLE_PRE_DUMP)", errBadRequest, kind))
	}
	if s.preDumped && kind != rpc.CriuReqType_PRE_DUMP && kind != rpc.CriuReqType_DUMP {
		return failure(kind, fmt.Errorf("%w: request %s after a PRE_DUMP: only PRE_DUMP or DUMP may follow one", errBadRequest, kind))
	}
	switch kind {
	case rpc.CriuReqType_VERSION:
		return s.versionResp(), nil
	case rpc.CriuReqType_FEATURE_CHECK:
		return featureCheck(req.GetFeatures()), nil
	case rpc.CriuReqType_CHECK:
		return s.check(req.GetOpts())
	case rpc.CriuReqType_DUMP, rpc.CriuReqType_PRE_DUMP, rpc.CriuReqType_SINGLE_PRE_DUMP:
		return s.dump(kind, req.GetOpts())
	case rpc.CriuReqType_RESTORE:
		return s.restore(req.GetOpts())
	case rpc.CriuReqType_PAGE_SERVER, rpc.CriuReqType_PAGE_SERVER_CHLD:
		return s.pageServer(kind, req.GetOpts())
	case rpc.CriuReqType_CPUINFO_DUMP, rpc.CriuReqType_CPUINFO_CHECK,
		rpc.CriuReqType_WAIT_PID:
		return failure(kind, fmt.Errorf("request %s: not supported yet", kind))
	case rpc.CriuReqType_NOTIFY:
		return failure(rpc.CriuReqType_EMPTY, fmt.Errorf("%w: request NOTIFY: no notification is pending", errBadRequest))
	}
	return failure(rpc.CriuReqType_EMPTY, fmt.Errorf("%w: unknown request type %d", errBadRequest, int32(kind)))
}

// versionResp answers VERSION with CRIU's interface level and amber's
// own version as gitid.
func (s *session) versionResp() *rpc.CriuResp {
	return &rpc.CriuResp{
		Type:    rpc.CriuReqType_VERSION.Enum(),
		Success: proto.Bool(true),
		Version: &rpc.CriuVersion{
			MajorNumber: proto.Int32(criuMajor),
			MinorNumber: proto.Int32(criuMinor),
			Gitid:       proto.String("amber-" + s.version),
			Name:        proto.String("amber"),
		},
	}
}

// failure is the response to a request that failed with err: CRIU's
// shape, success false and the message in cr_errmsg, with CRIU's errno
// for a request refused as bad (EBADRQC).
func failure(kind rpc.CriuReqType, err error) (*rpc.CriuResp, error) {
	resp := &rpc.CriuResp{Type: kind.Enum(), Success: proto.Bool(false), CrErrmsg: proto.String(err.Error())}
	if errors.Is(err, errBadRequest) {
		resp.CrErrno = proto.Int32(int32(ebadrqc))
	}
	return resp, err
}
