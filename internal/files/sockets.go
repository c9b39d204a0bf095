package files

import (
	"errors"
	"fmt"
	"os"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/netfilter"
	"amber/internal/plan"
	"amber/internal/sockets"
)

// Sockets are dumped and made by package sockets; the descriptor table
// hands each socket it meets there, and gives it what it needs of the
// table: where to add entries and how to dump (socketFiles) or make
// (socketPlanner) the files in flight on a unix socket (SCM_RIGHTS).

// socketFiles is the dump's table as package sockets sees it.
type socketFiles struct{ d *Dumper }

// Add appends e to files.img under the next id.
func (f socketFiles) Add(e *fdinfo.FileEntry) uint32 {
	t := f.d.Table
	id := t.nextID()
	e.Id = proto.Uint32(id)
	t.entries = append(t.entries, e)
	return id
}

// DumpInFlight records the files of descriptors in flight.
func (f socketFiles) DumpInFlight(pid int, fds []int) ([]uint32, error) {
	return f.d.dumpInFlight(pid, fds)
}

// ReleaseSockets ends what the dump did to the sockets it took: TCP
// connections leave repair mode if the tree goes on (resume), or are
// closed silently (sockets.Dumper.Release). It also closes amber's
// copies of the descriptors in flight on unix sockets.
func (d *Dumper) ReleaseSockets(resume bool) error {
	d.closeInFlight()
	return d.sockets.Release(resume)
}

// TCPConns lists the TCP connections the dump put in repair mode.
func (d *Dumper) TCPConns() []netfilter.Conn { return d.sockets.TCPConns() }

// dumpInFlight records the files behind fds, amber's copies of the
// descriptors one queued message carries on a socket of pid, and returns
// their file ids. amber keeps the copies open until ReleaseSockets: a
// descriptor of a task met later is matched to the same file through
// them (kcmp), as one of another task is.
func (d *Dumper) dumpInFlight(pid int, fds []int) ([]uint32, error) {
	if len(fds) == 0 {
		return nil, nil
	}
	d.inFlight = append(d.inFlight, fds...)
	self := os.Getpid()
	outer := d.inFlightOwner
	d.inFlightOwner = d.watchOwner(pid)
	defer func() { d.inFlightOwner = outer }()
	pidfd, err := unix.PidfdOpen(self, 0)
	if err != nil {
		return nil, fmt.Errorf("pidfd_open amber: %w", err)
	}
	defer unix.Close(pidfd)
	facts, err := gatherFds(self, pidfd, fds)
	if err != nil {
		return nil, fmt.Errorf("amber: %w", err)
	}
	ids := make([]uint32, 0, len(fds))
	for i, f := range facts {
		known := d.Table.nextID()
		e, err := d.dumpFd(self, f)
		if err == nil && e.GetId() >= known {
			err = d.dumpFown(pidfd, f.fd, e.GetId(), f.owner)
		}
		if err == nil && e.GetType() == fdinfo.FdTypes_PIDFD && d.Table.entries[e.GetId()-1].GetPidfd().GetNspid() != deadNspid {
			// Restore sends it before the tree exists (makePidfd).
			err = errors.New("a pidfd of a task of the tree: not supported yet")
		}
		if err != nil {
			return nil, fmt.Errorf("descriptor %d in flight (%s): %w", i, f.link, err)
		}
		ids = append(ids, e.GetId())
	}
	return ids, nil
}

// watchOwner is the process whose descriptor table the watches of an
// epoll held by pid name: pid's own, but for an epoll in flight, which
// amber holds: the table of the task whose socket queue it was on (the
// kernel does not say who added the watches).
func (d *Dumper) watchOwner(pid int) int {
	if pid == os.Getpid() && d.inFlightOwner != 0 {
		return d.inFlightOwner
	}
	return pid
}

// closeInFlight closes amber's copies of the descriptors in flight.
func (d *Dumper) closeInFlight() {
	for _, fd := range d.inFlight {
		unix.Close(fd)
	}
	d.inFlight = nil
}

// socketPlanner is a task's descriptor table plan as package sockets
// sees it.
type socketPlanner struct{ p *fdPlanner }

func (s socketPlanner) Builder() *plan.Builder { return s.p.b }
func (s socketPlanner) SafeFd() int            { return s.p.safe }

func (s socketPlanner) Placed(id uint32) (int, bool) {
	fd, ok := s.p.placed[id]
	return fd, ok
}

func (s socketPlanner) Have(id uint32) (int, bool) {
	fd, ok := s.p.have[id]
	return fd, ok
}

func (s socketPlanner) Make(id uint32) (int, error) { return s.p.make(id) }
func (s socketPlanner) Park(id uint32, fd int)      { s.p.park(id, fd) }
func (s socketPlanner) DeferToEnd(f func() error)   { s.p.deferToEnd(f) }

func (s socketPlanner) Create(what string, nr uintptr, args ...uint64) int {
	return s.p.create(what, nr, args...)
}

// socketPlan returns the plan of the task's sockets, made on first use:
// it gathers the unix sockets of the images once, however many the task
// holds.
func (p *fdPlanner) socketPlan() *sockets.Plan {
	if p.sockets == nil {
		in, x := p.in, p.in.extra()
		p.sockets = sockets.NewPlan(socketPlanner{p}, &sockets.RestoreInput{Files: in.Files, Stat: in.Stat,
			SkQueues: x.SkQueues, SkScm: x.SkScm, TCPStreams: x.TCPStreams,
			ExtUnixSk: in.ExtUnixSk, TCPEstablished: in.TCPEstablished, TCPClose: in.TCPClose,
			OwnNetns: in.NsIDs.GetNetNsId(), NetnsPid: in.NetnsPid})
	}
	return p.sockets
}
