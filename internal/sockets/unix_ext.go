package sockets

import (
	"fmt"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	skopts "github.com/checkpoint-restore/go-criu/v8/crit/images/sk-opts"
	skunix "github.com/checkpoint-restore/go-criu/v8/crit/images/sk-unix"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
)

// External unix sockets (--ext-unix-sk), as CRIU has them: a datagram
// socket of the tree connected to a named datagram socket outside it
// (a logger's /dev/log, say). The outside socket is written to files.img
// as CRIU writes it, flagged USK_EXTERN, with its name only (datagram,
// TCP_LISTEN, no peer, no options); no task holds it. The restore makes
// nothing for it and connects the tree's socket to its name again, which
// the outside process must still hold. Stream connections stay refused,
// as with criu: their other end cannot be connected again.

// addExternal records, in set and in files.img, the sockets outside the
// tree that sockets of set are connected to.
func (d *Dumper) addExternal(set unixSet) error {
	u := d.unix
	for _, ino := range sortedInos(u.dumped) {
		s := u.dumped[ino]
		p := s.entry.GetPeer()
		if p == 0 || set[p] != nil {
			continue
		}
		ext, err := externalEntry(u.diag[p], p)
		if err != nil {
			return fmt.Errorf("pid %d fd %d: unix socket %d (%s), with --ext-unix-sk: %w", s.pid, s.fd, ino, unixName(s.entry.GetName()), err)
		}
		ext.Id = proto.Uint32(d.files.Add(&fdinfo.FileEntry{Type: fdinfo.FdTypes_UNIXSK.Enum(), Usk: ext}))
		set[p] = ext
	}
	return nil
}

// externalEntry is CRIU's entry of the outside socket ino: a named
// datagram socket, whose name is absolute or abstract (amber cannot tell
// the directory of a relative one without holding the socket).
func externalEntry(sd *unixDiag, ino uint32) (*skunix.UnixSkEntry, error) {
	switch {
	case sd == nil:
		return nil, fmt.Errorf("its peer, unix socket %d outside the dumped tree, is gone", ino)
	case sd.typ != unix.SOCK_DGRAM:
		return nil, fmt.Errorf("connected to %s socket %d (%s) outside the dumped tree: "+
			"one end of a %s connection cannot be dumped (as with criu)", sockType(uint32(sd.typ)), ino, unixName(sd.name), sockType(uint32(sd.typ)))
	case len(sd.name) == 0:
		return nil, fmt.Errorf("connected to datagram socket %d outside the dumped tree, which has no name to connect to again", ino)
	case sd.name[0] != 0 && sd.name[0] != '/':
		return nil, fmt.Errorf("connected to datagram socket %d outside the dumped tree, bound to the relative name %s: not supported",
			ino, unixName(sd.name))
	}
	return &skunix.UnixSkEntry{
		Ino: proto.Uint32(ino), Type: proto.Uint32(unix.SOCK_DGRAM), State: proto.Uint32(tcpListen),
		Flags: proto.Uint32(0), Uflags: proto.Uint32(uskExtern), Backlog: proto.Uint32(0), Peer: proto.Uint32(0),
		Fown: zeroFown(), Opts: zeroSkOpts(), Name: append([]byte{}, sd.name...),
	}, nil
}

// checkExternal refuses a connection to the external socket p that
// cannot be made again: only a datagram socket connects again, by name.
func checkExternal(s, p *skunix.UnixSkEntry) error {
	switch {
	case s.GetType() != unix.SOCK_DGRAM || p.GetType() != unix.SOCK_DGRAM:
		return fmt.Errorf("a %s socket connected to the external socket %d: only datagram sockets are restored connected to one",
			sockType(s.GetType()), p.GetIno())
	case len(p.GetName()) == 0:
		return fmt.Errorf("connected to the external socket %d, which has no name to connect to again", p.GetIno())
	}
	_, _, err := sockaddr(p)
	return err
}

// checkExtAllowed refuses, without --ext-unix-sk, a socket of group g
// connected to an external one (as criu does).
func (u unixSet) checkExtAllowed(g []*skunix.UnixSkEntry, allowed bool) error {
	if allowed {
		return nil
	}
	for _, s := range g {
		if p := u[s.GetPeer()]; p != nil && p.GetUflags()&uskExtern != 0 {
			return fmt.Errorf("unix socket %d (%s) is connected to the external socket %d (%s): restore with --ext-unix-sk to connect it again",
				s.GetIno(), unixName(s.GetName()), p.GetIno(), unixName(p.GetName()))
		}
	}
	return nil
}

// zeroSkOpts is the options entry CRIU writes for an external socket:
// its required fields, zero.
func zeroSkOpts() *skopts.SkOptsEntry {
	z := proto.Uint32(0)
	return &skopts.SkOptsEntry{SoSndbuf: z, SoRcvbuf: z, SoSndTmoSec: proto.Uint64(0), SoSndTmoUsec: proto.Uint64(0),
		SoRcvTmoSec: proto.Uint64(0), SoRcvTmoUsec: proto.Uint64(0)}
}
