package sockets

import (
	"encoding/binary"
	"fmt"
	"maps"
	"os"
	"path"
	"slices"

	skunix "github.com/checkpoint-restore/go-criu/v8/crit/images/sk-unix"
	"golang.org/x/sys/unix"

	"amber/internal/plan"
)

// Unix sockets bound to a path that was deleted since ("ghost" sockets,
// as CRIU calls them): the socket keeps its name, but no file leads to
// it any more, or the file at its path is another one now (a socket
// bound there later, a FIFO). The dump marks them deleted; the restore
// binds each to its path again and removes its file at once, so that
// the file system is left as it was:
//
//   - directories of the path that are gone are made first (0755), and
//     removed again afterwards;
//   - a file at the path is renamed aside for the moment of the bind,
//     and back;
//   - the socket's file is opened O_PATH before it is removed: the
//     sockets that connect to it, or that refill its queue, reach it as
//     /proc/self/fd/N, which leads to the socket's inode whatever its
//     name (the kernel follows the link to the deleted file).
//
// Everything is decided when the plan is made, from the files there are
// then and the paths the plan itself binds (Plan.bound): restore
// makes one task at a time, so nothing else changes them meanwhile.

// bindGhost binds s, a socket whose file was deleted since the dump, to
// its name, keeps an O_PATH descriptor of its file for connect and
// refill, and removes the file again.
func (m *unixMaker) bindGhost(s *skunix.UnixSkEntry) error {
	addr, dir, err := sockaddr(s)
	if err != nil {
		return err
	}
	b, full := m.p.b, socketPath(s)
	made, err := m.p.missingDirs(path.Dir(full))
	if err != nil {
		return err
	}
	for _, d := range made {
		b.Call("make directory "+d+" to bind "+m.what(s)+" again", unix.SYS_MKDIRAT, plan.AtFdcwd, b.String(d), 0o755)
	}
	parked, err := m.p.parkAside(full)
	if err != nil {
		return err
	}
	if parked != "" {
		b.Call("move "+full+" aside to bind "+m.what(s), unix.SYS_RENAMEAT, plan.AtFdcwd, b.String(full), plan.AtFdcwd, b.String(parked))
	}
	m.fromDir(dir, func() {
		b.Call("bind "+m.what(s)+" (its file deleted since)", unix.SYS_BIND, uint64(m.fds[s.GetIno()]), b.Bytes(addr), uint64(len(addr)))
	})
	if perms := s.GetFilePerms(); perms != nil {
		b.Call("chmod socket file "+full, unix.SYS_FCHMODAT, plan.AtFdcwd, b.String(full), uint64(perms.GetMode()&0o7777), 0)
		b.Privileged("chown socket file "+full, unix.SYS_FCHOWNAT, plan.AtFdcwd, b.String(full), uint64(perms.GetUid()), uint64(perms.GetGid()), unix.AT_SYMLINK_NOFOLLOW)
	}
	keep := b.Open("keep the file of "+m.what(s), full, unix.O_PATH|unix.O_NOFOLLOW, 0)
	m.ghosts[s.GetIno()] = b.MoveAbove(keep, m.p.safe)
	b.Call("remove the file of "+m.what(s)+", deleted at the dump", unix.SYS_UNLINKAT, plan.AtFdcwd, b.String(full), 0)
	if parked != "" {
		b.Call("move "+full+" back", unix.SYS_RENAMEAT, plan.AtFdcwd, b.String(parked), plan.AtFdcwd, b.String(full))
	}
	for i := len(made) - 1; i >= 0; i-- {
		b.Call("remove directory "+made[i]+" again", unix.SYS_UNLINKAT, plan.AtFdcwd, b.String(made[i]), unix.AT_REMOVEDIR)
	}
	return nil
}

// ghostAddr is the sockaddr_un that reaches a ghost socket through the
// O_PATH descriptor fd of its deleted file.
func ghostAddr(fd int) []byte {
	b := binary.LittleEndian.AppendUint16(nil, unix.AF_UNIX)
	return append(b, fmt.Sprintf("/proc/self/fd/%d", fd)...)
}

// closeGhosts closes the descriptors of the ghost sockets' files once
// the group is made: nothing connects to them by name any more.
func (m *unixMaker) closeGhosts() {
	for _, ino := range slices.Sorted(maps.Keys(m.ghosts)) {
		m.p.b.Close(m.ghosts[ino])
	}
}

// missingDirs lists, parents first, the directories of dir that do not
// exist (for the plan so far).
func (p *Plan) missingDirs(dir string) ([]string, error) {
	var out []string
	for d := dir; d != "/" && d != "."; d = path.Dir(d) {
		there, err := p.exists(d)
		if err != nil {
			return nil, err
		}
		if there {
			break
		}
		out = append([]string{d}, out...)
	}
	return out, nil
}

// parkAside returns where the file at full waits while a ghost socket
// is bound there, "" when there is none: a name beside it that is free.
func (p *Plan) parkAside(full string) (string, error) {
	there, err := p.exists(full)
	if err != nil || !there {
		return "", err
	}
	for i := 0; ; i++ {
		parked := fmt.Sprintf("%s.amber-ghost-%d", full, i)
		taken, err := p.exists(parked)
		if err != nil {
			return "", err
		}
		if !taken {
			return parked, nil
		}
	}
}

// setBound records that the plan leaves a file at name, or none.
func (p *Plan) setBound(name string, there bool) {
	if p.bound == nil {
		p.bound = map[string]bool{}
	}
	p.bound[name] = there
}

// exists tells whether a file is at name once the plan so far has run:
// a path the plan binds a socket to or removes, or else what is there
// now.
func (p *Plan) exists(name string) (bool, error) {
	if there, ok := p.bound[name]; ok {
		return there, nil
	}
	_, err := p.in.Stat(name)
	if os.IsNotExist(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("%s: %w", name, err)
	}
	return true, nil
}
