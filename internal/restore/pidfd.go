package restore

import (
	"amber/internal/compel"
	"amber/internal/files"
)

// openDeadPidfds makes amber's pidfds standing for those of the images
// whose process was dead (files.OpenDeadPidfds). The processes they point
// to are restore stubs, which never run: each is killed and reaped before
// this returns, so it holds no PID the tree needs. It must run on the
// tracer's thread.
func openDeadPidfds(tree *treeImages) (*files.DeadPidfds, error) {
	return files.OpenDeadPidfds(tree.root.files, func() (int, func(), error) {
		s, err := compel.StartStub()
		if err != nil {
			return 0, nil, err
		}
		return s.Pid, s.Close, nil
	})
}
