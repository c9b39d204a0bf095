package dump

// Where the tracking of written pages lives between two commands: a
// userfaultfd of each process's memory (mem.InitTracking), created inside
// the process by its parasite and parked there at a high descriptor
// number, RLIMIT_NOFILE's soft limit minus one (or the highest free one
// below it). The process holds it as long as it lives, so nothing of
// amber has to stay running between a pre-dump and the dump, and it dies
// with the process. amber finds it again by the record it wrote beside
// the images (trackRecord: PID, descriptor, inode) and never dumps it: a
// restored process has no such descriptor. The process sees its table
// change only if it looks at that number (fcntl, /proc/self/fd) or opens
// descriptors up to its limit; a write to a tracked page is resolved in
// the kernel, without a fault or signal the process could see. A
// pre-dump that fails closes the descriptor again: the process runs on as
// it was, untracked.
//
// On kernels without asynchronous write protection the dump tracks
// writes by soft-dirty bits (mem.ClearSoftDirty), but parks a
// userfaultfd all the same, never set up: its inode and generation tell
// that the bits were last cleared by the dump of the images before, and
// a dump that fails after clearing them closes it.

import (
	"bufio"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/vma"
	"golang.org/x/sys/unix"

	"amber/internal/compel"
	"amber/internal/image"
	"amber/internal/mem"
	"amber/internal/proc"
	"amber/internal/uffd"
)

// trackRecord is the file beside the images that says where each
// process's tracking userfaultfd is parked.
const trackRecord = "amber-track.txt"

// uffdLink is what /proc shows for a userfaultfd.
const uffdLink = "anon_inode:[userfaultfd]"

// parked is a process's tracking userfaultfd, parked in the process.
type parked struct {
	pid, fd int
	ino     uint64 // tells it from any other descriptor at that number
	// gen counts the dumps that re-armed it, modulo genModulo: a dump on
	// top of images that a later dump re-armed after is refused.
	gen int
}

// tracking is the tracking of one process during a dump.
type tracking struct {
	parked
	par  *compel.Parasite
	uffd *os.File // amber's copy, nil if not taken
	// continues: it is the userfaultfd the record of the parent images
	// names, so the pages it reports unwritten are those of the images.
	continues bool
	// changed: this dump created it or re-armed it; a failed dump closes
	// it, since the record of the images before no longer holds.
	changed bool
}

// readTrackRecord reads the record of the images before, if any.
func readTrackRecord(dir image.Dir) (map[int]parked, error) {
	f, err := dir.File(trackRecord).Open()
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[int]parked{}
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		if line == 1 {
			if sc.Text() != "amber-track 1" {
				return nil, fmt.Errorf("%s/%s: line 1: not an amber-track 1 record", dir, trackRecord)
			}
			continue
		}
		var p parked
		if _, err := fmt.Sscanf(sc.Text(), "%d %d %d %d", &p.pid, &p.fd, &p.ino, &p.gen); err != nil {
			return nil, fmt.Errorf("%s/%s: line %d: %w", dir, trackRecord, line, err)
		}
		out[p.pid] = p
	}
	return out, sc.Err()
}

// writeTrackRecord writes the record of the userfaultfds parked by this
// dump, if it tracks memory.
func (d *dumper) writeTrackRecord() error {
	if !d.opts.TrackMem {
		return nil
	}
	var b strings.Builder
	b.WriteString("amber-track 1\n")
	for _, p := range slices.Sorted(maps.Keys(d.tracks)) {
		if t := d.tracks[p]; t != nil && t.ino != 0 {
			fmt.Fprintf(&b, "%d %d %d %d\n", t.pid, t.fd, t.ino, t.gen)
		}
	}
	return d.dir.File(trackRecord).WriteFile([]byte(b.String()))
}

// tracking finds the tracking userfaultfd parked in the process: the one
// the record of the images before names, if it is still there, or one an
// earlier amber pre-dump of it left unrecorded (a userfaultfd at the
// parking number with asynchronous write protection, which amber's are).
// It returns nil if there is none.
func (d *dumper) tracking(ps *procState) (*tracking, error) {
	if t, ok := d.tracks[ps.pid]; ok {
		return t, nil
	}
	t, err := d.findParked(ps)
	if err != nil {
		return nil, err
	}
	d.tracks[ps.pid] = t
	return t, nil
}

func (d *dumper) findParked(ps *procState) (*tracking, error) {
	if rec, ok := d.prevTrack[ps.pid]; ok {
		ino, ok := uffdAt(ps.pid, rec.fd)
		switch gen := generation(ps.pid, rec.fd); {
		case ok && ino == rec.ino && gen == rec.gen:
			return &tracking{parked: rec, par: ps.par, continues: true}, nil
		case ok && ino == rec.ino:
			d.log.Warnf("pid %d: %s are not the last images its memory tracking counted from (a later dump re-armed it): every page is dumped again",
				ps.pid, d.opts.PrevImagesDir)
			rec.gen = gen
			return &tracking{parked: rec, par: ps.par}, nil
		}
		d.log.Warnf("pid %d: the memory tracking of %s/%s is gone: every page is dumped again", ps.pid, d.opts.PrevImagesDir, trackRecord)
	}
	fd, err := parkingFd(ps.pid)
	if err != nil {
		return nil, err
	}
	ino, ok := uffdAt(ps.pid, fd)
	if !ok || !amberUffd(ps.pid, fd) {
		return nil, nil
	}
	if d.ownedElsewhere(ps.pid, ino) {
		// A copy a child inherited from its parent by fork: it tracks the
		// parent's memory. It is amber's, not the child's: hidden, and
		// replaced should the child be tracked.
		d.strays[ps.pid] = fd
		return nil, nil
	}
	return &tracking{parked: parked{ps.pid, fd, ino, generation(ps.pid, fd)}, par: ps.par}, nil
}

// The generation of a tracking lives in its open file's status flags,
// which amber sets through its copy and reads in the process's fdinfo:
// the process never uses the descriptor, so they change nothing for it.
// Three flags F_SETFL may change on any file count to genModulo.
var genFlags = [...]int{unix.O_NONBLOCK, unix.O_APPEND, unix.O_NOATIME}

const genModulo = 1 << len(genFlags)

// generation reads the generation of the tracking at fd of pid, -1 if
// its fdinfo cannot be read.
func generation(pid, fd int) int {
	b, err := proc.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%d", pid, fd))
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "flags:"); ok {
			flags, err := strconv.ParseUint(strings.TrimSpace(v), 8, 64)
			if err != nil {
				return -1
			}
			gen := 0
			for i, f := range genFlags {
				if flags&uint64(f) != 0 {
					gen |= 1 << i
				}
			}
			return gen
		}
	}
	return -1
}

// nextGeneration counts one more arming of the tracking, in its flags.
func (t *tracking) nextGeneration() error {
	t.gen = (max(t.gen, 0) + 1) % genModulo
	flags, err := unix.FcntlInt(t.uffd.Fd(), unix.F_GETFL, 0)
	if err != nil {
		return fmt.Errorf("userfaultfd flags: %w", err)
	}
	for i, f := range genFlags {
		flags &^= f
		if t.gen&(1<<i) != 0 {
			flags |= f
		}
	}
	if _, err := unix.FcntlInt(t.uffd.Fd(), unix.F_SETFL, flags); err != nil {
		return fmt.Errorf("userfaultfd flags: %w", err)
	}
	return nil
}

// ownedElsewhere tells whether the userfaultfd ino is the tracking of
// another process than pid.
func (d *dumper) ownedElsewhere(pid int, ino uint64) bool {
	for _, p := range d.prevTrack {
		if p.ino == ino && p.pid != pid {
			return true
		}
	}
	for _, t := range d.tracks {
		if t != nil && t.ino == ino && t.pid != pid {
			return true
		}
	}
	return false
}

// uffdAt tells whether descriptor fd of pid is a userfaultfd, and its
// inode.
func uffdAt(pid, fd int) (uint64, bool) {
	link, err := proc.FdPath(pid, fd)
	if err != nil || link != uffdLink {
		return 0, false
	}
	var st unix.Stat_t
	if err := unix.Stat(fmt.Sprintf("/proc/%d/fd/%d", pid, fd), &st); err != nil {
		return 0, false
	}
	return st.Ino, true
}

// amberUffd tells whether the userfaultfd fd of pid, at the parking
// number, is amber's: with asynchronous write protection, or never set
// up (what an amber killed right after parking it leaves), which is of
// no use to the process.
func amberUffd(pid, fd int) bool {
	f, ok := uffdFeatures(pid, fd)
	return ok && (f == 0 || f&mem.TrackFeatures == mem.TrackFeatures)
}

// uffdFeatures reads the features of the userfaultfd fd of pid from its
// fdinfo's "API: api:features:ioctls" line.
func uffdFeatures(pid, fd int) (uint64, bool) {
	b, err := proc.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%d", pid, fd))
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "API:"); ok {
			parts := strings.Split(strings.TrimSpace(v), ":")
			if len(parts) < 2 {
				return 0, false
			}
			f, err := strconv.ParseUint(parts[1], 16, 64)
			return f, err == nil
		}
	}
	return 0, false
}

// maxParking bounds the parking number: a process allowed a million
// descriptors would otherwise get a descriptor table of a million
// entries (8 MiB of kernel memory) for one.
const maxParking = 1 << 16

// parkingFd is where a tracking userfaultfd is parked in pid: the highest
// descriptor its RLIMIT_NOFILE allows (at most maxParking-1), or if that
// one is taken by something else than a userfaultfd, the highest free
// one below.
func parkingFd(pid int) (int, error) {
	lims, err := proc.ReadLimits(pid)
	if err != nil {
		return 0, err
	}
	limit := uint64(1024)
	for _, l := range lims {
		if l.Resource == unix.RLIMIT_NOFILE {
			limit = l.Soft
		}
	}
	top := int(min(limit, maxParking)) - 1
	// The top numbers one by one: usually the first is free, and a table
	// of thousands is not listed for it (the dump lists it once after).
	for fd := top; fd > max(2, top-parkingProbes); fd-- {
		free, err := parkable(pid, fd)
		if err != nil || free {
			return fd, err
		}
	}
	fds, err := proc.Fds(pid)
	if err != nil {
		return 0, err
	}
	for fd := top - parkingProbes; fd > 2; fd-- {
		if _, ok := slices.BinarySearch(fds, fd); !ok || isUffd(pid, fd) {
			return fd, nil
		}
	}
	return 0, fmt.Errorf("no free descriptor to park the memory tracking in (RLIMIT_NOFILE %d)", limit)
}

// parkingProbes is how many of the top numbers parkingFd tries one by
// one before it lists the descriptors.
const parkingProbes = 16

// parkable tells whether fd of pid is free or a userfaultfd.
func parkable(pid, fd int) (bool, error) {
	link, err := proc.FdPath(pid, fd)
	if errors.Is(err, unix.ENOENT) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	return link == uffdLink, nil
}

// isUffd tells whether fd of pid is a userfaultfd.
func isUffd(pid, fd int) bool {
	_, ok := uffdAt(pid, fd)
	return ok
}

// startTracking creates a tracking userfaultfd in the process and parks
// it: the parasite makes it and moves it to the parking number in one
// batch, which runs whole even should amber die meanwhile, so that no
// descriptor is ever left at a low number, where the process would see
// it (its next open would get another number); amber then takes a copy
// and does the handshake. The batch names the descriptor userfaultfd
// will get before it runs: the lowest free one of a frozen process.
//
// The userfaultfd handles user-mode faults only (UFFD_USER_MODE_ONLY):
// with asynchronous write protection it handles none at all, the kernel
// lifting the protection itself, so this changes nothing for the
// tracking, and lets a process without CAP_SYS_PTRACE make it, as the
// processes of containers are (runc's and Podman's default capabilities
// leave it out), where vm.unprivileged_userfaultfd is 0.
func (d *dumper) startTracking(ps *procState) (*tracking, error) {
	park, err := parkingFd(ps.pid)
	if err != nil {
		return nil, err
	}
	fd, err := lowestFree(ps.pid)
	if err != nil {
		return nil, err
	}
	if fd >= park {
		return nil, fmt.Errorf("no free descriptor below %d to make the memory tracking with", park)
	}
	calls := []compel.Call{
		{Nr: unix.SYS_USERFAULTFD, Args: [6]uint64{unix.O_CLOEXEC | unix.O_NONBLOCK | uffd.UserModeOnly}},
		{Nr: unix.SYS_DUP3, Args: [6]uint64{uint64(fd), uint64(park), unix.O_CLOEXEC}},
		{Nr: unix.SYS_CLOSE, Args: [6]uint64{uint64(fd)}},
	}
	leader := ps.par.Leader()
	res, err := leader.Batch(calls)
	var te *compel.TableError
	if errors.As(err, &te) && te.Index > 0 {
		// Made, not parked: closed again.
		_, cerr := leader.Batch(calls[2:])
		return nil, errors.Join(fmt.Errorf("park the userfaultfd at %d: %w", park, err), cerr)
	}
	if err != nil {
		return nil, fmt.Errorf("userfaultfd: %w", err)
	}
	t := &tracking{parked: parked{pid: ps.pid, fd: park}, par: ps.par, changed: true}
	if int(res[0]) != fd {
		return nil, errors.Join(fmt.Errorf("userfaultfd got descriptor %d, not %d: is the descriptor table shared with a process outside the tree?", res[0], fd), t.close())
	}
	if err := t.take(); err != nil {
		return nil, errors.Join(err, t.close())
	}
	if !d.softDirty {
		if err := mem.InitTracking(t.uffd); err != nil {
			return nil, errors.Join(err, t.close())
		}
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(t.uffd.Fd()), &st); err != nil {
		return nil, errors.Join(err, t.close())
	}
	t.ino = st.Ino
	d.log.Infof("pid %d: memory tracking parked at fd %d", ps.pid, t.fd)
	return t, nil
}

// lowestFree is the lowest descriptor number pid has free.
func lowestFree(pid int) (int, error) {
	fds, err := proc.Fds(pid)
	if err != nil {
		return 0, err
	}
	free := 0
	for _, fd := range fds { // sorted
		if fd == free {
			free++
		} else if fd > free {
			break
		}
	}
	return free, nil
}

// take copies the parked userfaultfd into amber.
func (t *tracking) take() error {
	if t.uffd != nil {
		return nil
	}
	pidfd, err := unix.PidfdOpen(t.pid, 0)
	if err != nil {
		return fmt.Errorf("pidfd_open: %w", err)
	}
	defer unix.Close(pidfd)
	fd, err := unix.PidfdGetfd(pidfd, t.fd, 0)
	if err != nil {
		return fmt.Errorf("take the userfaultfd at fd %d: pidfd_getfd: %w", t.fd, err)
	}
	t.uffd = os.NewFile(uintptr(fd), fmt.Sprintf("userfaultfd of pid %d", t.pid))
	return nil
}

// close closes the userfaultfd in the process (its pages untracked
// again) and amber's copy.
func (t *tracking) close() error {
	var errs []error
	if _, err := t.par.Leader().Batch([]compel.Call{{Nr: unix.SYS_CLOSE, Args: [6]uint64{uint64(t.fd)}}}); err != nil {
		errs = append(errs, fmt.Errorf("pid %d: close the memory tracking at fd %d: %w", t.pid, t.fd, err))
	}
	return errors.Join(append(errs, t.release())...)
}

// release closes amber's copy.
func (t *tracking) release() error {
	if t.uffd == nil {
		return nil
	}
	err := t.uffd.Close()
	t.uffd = nil
	return err
}

// incremental sets up the tracking of the process's memory (--track-mem)
// and says which pages the dump may leave to the parent images: those of
// the VMAs tracked since them that it reports unwritten. It re-arms the
// tracking: from now on it counts writes since this dump.
func (d *dumper) incremental(ps *procState, vmas []*vma.VmaEntry) (*mem.Incremental, error) {
	if !d.opts.TrackMem {
		return nil, nil
	}
	t, err := d.tracking(ps)
	if err != nil {
		return nil, err
	}
	if t == nil {
		if t, err = d.startTracking(ps); err != nil {
			return nil, err
		}
		d.tracks[ps.pid] = t
	}
	if err := t.take(); err != nil {
		return nil, err
	}
	t.changed = true
	if f, ok := uffdFeatures(t.pid, t.fd); ok && f == 0 && !d.softDirty {
		// Parked by an amber that died before the handshake.
		if err := mem.InitTracking(t.uffd); err != nil {
			return nil, err
		}
	}
	if err := t.nextGeneration(); err != nil {
		return nil, err
	}
	tracked, err := d.track(t, vmas)
	if err != nil {
		return nil, err
	}
	// The dump's scan of the memory reads and re-arms the tracking.
	inc := &mem.Incremental{Tracked: tracked, Marker: d.marker, SoftDirty: d.softDirty}
	if !t.continues {
		return inc, nil // everything copied; tracked from now on
	}
	inc.InParent, err = d.parentRuns(d.pids.of(ps.pid))
	return inc, err
}

// track returns the ranges of vmas whose writes are tracked: those
// registered with the userfaultfd, or with soft-dirty bits, those the
// bits cover. In that case the userfaultfd, never set up, tracks
// nothing: it is kept only to tell that this is still the tracking the
// images before counted from (its inode and generation), and closed
// where a failed dump cleared the bits.
func (d *dumper) track(t *tracking, vmas []*vma.VmaEntry) ([]mem.Run, error) {
	if d.softDirty {
		return mem.TrackedBySoftDirty(vmas), nil
	}
	return mem.Register(t.uffd, vmas)
}

// parentRuns are the pages the parent images hold for pid (the images'
// PID).
func (d *dumper) parentRuns(pid int) ([]mem.Run, error) {
	_, entries, err := mem.ReadPagemap(d.prevPagemap(pid))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("parent images: %w", err)
	}
	return mem.ParentRuns(entries), nil
}

// hiddenFds are the descriptors of the process amber put there itself:
// the parasite's, the parked tracking userfaultfd, and a copy of its
// parent's that it inherited.
func (d *dumper) hiddenFds(ps *procState) ([]int, error) {
	fds := ps.par.Fds()
	t, err := d.tracking(ps)
	if err != nil {
		return nil, err
	}
	if t != nil {
		fds = append(fds, t.fd)
	}
	if fd, ok := d.strays[ps.pid]; ok {
		fds = append(fds, fd)
	}
	return fds, nil
}

// endTracking finishes with the tracking of every process: amber's
// copies are closed; in the processes it is closed if the dump failed
// after changing it (the images before no longer match it), or if the
// tree runs on after a dump that does not track memory.
func (d *dumper) endTracking(failed bool) error {
	var errs []error
	for _, t := range d.tracks {
		if t == nil {
			continue
		}
		if (failed && t.changed) || (!failed && !d.opts.TrackMem && !d.opts.PreDump && d.opts.LeaveRunning) {
			errs = append(errs, t.close())
			continue
		}
		errs = append(errs, t.release())
	}
	return errors.Join(errs...)
}
