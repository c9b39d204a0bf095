package files

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/fdinfo"
	"golang.org/x/sys/unix"

	"amber/internal/proc"
)

// This file holds what the event descriptors (eventfd.go, eventpoll.go,
// signalfd.go, timerfd.go, inotify.go) share: they are anonymous-inode
// files that /proc/PID/fd shows as "anon_inode:[KIND]", whose state the
// kernel prints in /proc/PID/fdinfo, and that restore recreates with one
// system call.

// addEntry appends an entry of type typ to the table under the next id,
// and returns the id and type as Dumper.addFile does; fill sets the
// entry's kind-specific part knowing the id.
func (t *Table) addEntry(typ fdinfo.FdTypes, fill func(e *fdinfo.FileEntry, id uint32)) (uint32, fdinfo.FdTypes, error) {
	id := t.nextID()
	e := &fdinfo.FileEntry{Type: typ.Enum(), Id: &id}
	fill(e, id)
	t.entries = append(t.entries, e)
	return id, typ, nil
}

// fdinfoFields splits one fdinfo line of "key: value" pairs, such as an
// epoll "tfd:" line or an inotify "inotify wd:" one, into a map. A key may
// be followed by its value directly ("wd:4") or after spaces ("tfd:   5");
// words that are neither are ignored.
func fdinfoFields(line string) map[string]string {
	out := map[string]string{}
	words := strings.Fields(line)
	for i := 0; i < len(words); i++ {
		key, val, ok := strings.Cut(words[i], ":")
		if !ok {
			continue
		}
		if val == "" && i+1 < len(words) && !strings.Contains(words[i+1], ":") {
			i++
			val = words[i]
		}
		out[key] = val
	}
	return out
}

// hexField parses fields[key] as a hexadecimal number of at most bits bits.
func hexField(fields map[string]string, key string, bits int) (uint64, error) {
	return numField(fields, key, 16, bits)
}

// numField parses fields[key] as a number in base of at most bits bits.
func numField(fields map[string]string, key string, base, bits int) (uint64, error) {
	s, ok := fields[key]
	if !ok {
		return 0, fmt.Errorf("no %q field", key)
	}
	n, err := strconv.ParseUint(s, base, bits)
	if err != nil {
		return 0, fmt.Errorf("field %q: %w", key, err)
	}
	return n, nil
}

// takeFd copies descriptor fd of process pid into amber with
// pidfd_getfd: amber then shares that open file, to ask the kernel about
// it. The caller closes the copy.
func takeFd(pid, fd int) (*os.File, error) {
	got, err := proc.CopyFd(pid, fd)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(got), fmt.Sprintf("fd %d of pid %d", fd, pid)), nil
}

// create plans a call that makes one new descriptor and returns its
// number.
func (p *fdPlanner) create(what string, nr uintptr, args ...uint64) int {
	fd := p.b.Next()
	p.b.Call(fmt.Sprintf("%s as fd %d", what, fd), nr, args...)
	return p.b.Take()
}

// nonblock is the O_NONBLOCK bit of open flags, which every event
// descriptor's creating call takes under its own name (EFD_NONBLOCK,
// SFD_NONBLOCK, TFD_NONBLOCK, IN_NONBLOCK are all O_NONBLOCK).
func nonblock(flags uint32) uint64 { return uint64(flags & unix.O_NONBLOCK) }

// setNonblock plans setting O_NONBLOCK on fd if flags has it, for files
// whose creating call cannot (epoll_create1).
func (p *fdPlanner) setNonblock(fd int, flags uint32, what string) {
	if fl := nonblock(flags); fl != 0 {
		p.b.Call(fmt.Sprintf("set O_NONBLOCK on %s", what), unix.SYS_FCNTL, uint64(fd), unix.F_SETFL, fl)
	}
}

// deferToEnd plans work that needs every descriptor of the task at its
// number, such as the watches of an epoll: PlanFds runs it once all are
// placed.
func (p *fdPlanner) deferToEnd(f func() error) { p.deferred = append(p.deferred, f) }

// runDeferred runs the work deferToEnd collected, in order.
func (p *fdPlanner) runDeferred() error {
	for _, f := range p.deferred {
		if err := f(); err != nil {
			return err
		}
	}
	return nil
}

// hasTarget reports whether the task's dumped table has descriptor fd.
func (p *fdPlanner) hasTarget(fd int) bool {
	for _, f := range p.in.Fds {
		if int(f.GetFd()) == fd {
			return true
		}
	}
	return false
}
