package image

import (
	"errors"
	"fmt"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// ParentLink is the symbolic link by which the images of an incremental
// dump name the images of the dump before (CRIU's "parent"): pagemap
// entries flagged PE_PARENT have their pages there.
const ParentLink = "parent"

// LinkParent makes the directory's parent link point to target, as given
// (a relative target is taken from the directory, as CRIU's
// --prev-images-dir): a link of that name is replaced.
func (d Dir) LinkParent(target string) error {
	dfd, err := d.fd()
	if err != nil {
		return err
	}
	if err := unix.Unlinkat(dfd, ParentLink, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return d.File(ParentLink).error("replace", err)
	}
	if err := unix.Symlinkat(target, dfd, ParentLink); err != nil {
		return d.File(ParentLink).error("link to "+target, err)
	}
	return nil
}

// ParentPath is where the directory's parent link leads, resolved from
// the directory, or "" without one.
func (d Dir) ParentPath() (string, error) {
	dfd, err := d.fd()
	if err != nil {
		return "", err
	}
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlinkat(dfd, ParentLink, buf)
	if errors.Is(err, unix.ENOENT) {
		return "", nil
	}
	if err != nil {
		return "", d.File(ParentLink).error("read link", err)
	}
	target := string(buf[:n])
	if !filepath.IsAbs(target) {
		target = filepath.Join(d.resolved, target)
	}
	return target, nil
}

// OpenParent opens the images directory the parent link names, with the
// checks the directory itself was opened with (OpenTrustedDir's for a
// trusted one), or returns an error without a link.
func (d Dir) OpenParent() (Dir, error) {
	path, err := d.ParentPath()
	if err != nil {
		return Dir{}, err
	}
	if path == "" {
		return Dir{}, fmt.Errorf("%s: no %s link to the parent images", d.path, ParentLink)
	}
	if d.trust != nil {
		return OpenTrustedDir(path, int(d.trust.caller))
	}
	return OpenDir(path)
}
