package image

import (
	"errors"
	"fmt"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// A restore run by root does what the images say with root's power: they
// name the files the process holds open (for writing too), its
// credentials and capabilities, its code. Whoever can write the images
// can therefore act as root through a restore. OpenTrustedDir refuses
// images that anyone but root and the caller could have written:
//
//   - the images directory must be owned by root or the caller and be
//     writable by neither its group nor others, so that nobody else can
//     add, remove or rename an image in it;
//   - every directory above it up to / must be owned by root or the
//     caller and be writable by neither its group nor others, unless it
//     has the sticky bit (like /tmp): then others may create entries in
//     it but cannot rename or remove those of the owner of the next
//     directory down, so nobody else can swap the images directory;
//   - every image amber reads, and every pages image the restored tasks
//     read, must be a regular file (never a symbolic link, which is not
//     followed) owned by root or the caller and writable by neither its
//     group nor others.
//
// Group write is refused whatever the group, as sshd's StrictModes does:
// amber cannot know who its members are. POSIX ACLs are covered: when a
// file has one, its group permission bits are the ACL's mask, which any
// write permission granted to a named user or group sets. Not covered:
// capabilities of other users (CAP_DAC_OVERRIDE ignores all of this),
// security modules, and the files outside the images directory that the
// images name (those are the process's own files).
//
// One exception, for test harnesses such as CRIU's zdtm, which make every
// images directory writable by all so that tests running as other users
// can dump into it: an images directory owned by root or the caller may
// be writable by others (a shared directory) if it holds a manifest
// (amber-manifest.txt) that every image matches. Others could then
// rename, replace or add entries at any moment, so in a shared directory
// amber reads an image only through the descriptor it verified against
// the manifest, kept open from the check to the end of the restore
// (pinned): the restored tasks read their pages through amber's
// descriptors (/proc/AMBER/fd/N), never by name. Whoever writes the
// directory can make the restore fail, not change what it restores: they
// cannot create a file owned by root or the caller, and a file moved in
// from elsewhere does not match the manifest. Images without a manifest
// (CRIU's) in a shared directory are refused.
//
// The directory above is checked from the opened directory upwards
// through "..", not by its path, so that the directories checked are
// those the directory is in, and the restored tasks open their pages
// images by the directory's resolved path, which those checks protect.

// ErrUntrusted is returned for an images directory, a directory above it
// or an image that a user other than root and the caller can write.
var ErrUntrusted = errors.New("a user other than root and the caller can write it")

// trust is the policy of a trusted Dir: the users besides root whose
// images are trusted.
type trust struct {
	caller uint32
	// shared is set when the images directory itself is writable by
	// others; why says so, for the error refusing an image the manifest
	// did not verify.
	shared bool
	why    error
}

// isShared tells whether the directory is shared: writable by others,
// its images read only as verified and pinned.
func (t *trust) isShared() bool { return t != nil && t.shared }

// OpenTrustedDir opens the images directory at path as OpenDir does,
// after checking that only root and the user caller can write it and the
// directories above it; Open and Stat of its files then check each file
// too. The errors name the path at fault and wrap ErrUntrusted.
func OpenTrustedDir(path string, caller int) (Dir, error) {
	d, err := OpenDir(path)
	if err != nil {
		return Dir{}, err
	}
	d.trust = &trust{caller: uint32(caller)}
	if err := d.checkTree(); err != nil {
		d.Close()
		return Dir{}, err
	}
	return d, nil
}

// checkTree checks the directory and every directory above it.
func (d Dir) checkTree() error {
	fd, err := unix.Openat(int(d.f.Fd()), ".", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("images directory %s: %w", d.path, err)
	}
	name, above := d.resolved, false
	for {
		var st unix.Stat_t
		err := unix.Fstat(fd, &st)
		if err == nil && !above {
			err = d.trust.checkImagesDir(name, &st)
		} else if err == nil {
			err = d.trust.check(name, &st, above)
		}
		var up int
		if err == nil {
			up, err = unix.Openat(fd, "..", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		}
		unix.Close(fd)
		if err != nil {
			return err
		}
		var ust unix.Stat_t
		if err := unix.Fstat(up, &ust); err != nil {
			unix.Close(up)
			return fmt.Errorf("%s: %w", filepath.Dir(name), err)
		}
		if ust.Dev == st.Dev && ust.Ino == st.Ino {
			unix.Close(up) // "/": its own parent
			return nil
		}
		fd, name, above = up, filepath.Dir(name), true
	}
}

// checkImagesDir checks the images directory itself: owned by root or
// the caller, and if others may write it, shared.
func (t *trust) checkImagesDir(name string, st *unix.Stat_t) error {
	err := t.check(name, st, false)
	if err == nil || st.Mode&0o022 == 0 || (st.Uid != 0 && st.Uid != t.caller) {
		return err
	}
	t.shared, t.why = true, err
	return nil
}

// unverified refuses an image of a shared directory read without a
// manifest, or that the manifest did not verify.
func (t *trust) unverified(name, what string) error {
	return fmt.Errorf("%s: %s, and %w; in such a directory amber reads only images its %s verified",
		name, what, t.why, ManifestName)
}

// check refuses st, the file or directory at name, if anyone but root
// and the caller can write it. A directory above the images directory
// may be writable by others if it has the sticky bit.
func (t *trust) check(name string, st *unix.Stat_t, above bool) error {
	if t == nil {
		return nil
	}
	if st.Uid != 0 && st.Uid != t.caller {
		return fmt.Errorf("%s is owned by uid %d, not by root or uid %d: %w", name, st.Uid, t.caller, ErrUntrusted)
	}
	sticky := above && st.Mode&unix.S_ISVTX != 0
	if st.Mode&0o022 != 0 && !sticky {
		who := "its group (gid " + fmt.Sprint(st.Gid) + ")"
		if st.Mode&0o002 != 0 {
			who = "every user"
		}
		return fmt.Errorf("%s is writable by %s (mode %04o): %w", name, who, st.Mode&0o7777, ErrUntrusted)
	}
	return nil
}
