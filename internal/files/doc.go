// Package files dumps and restores a task's descriptor table
// (fdinfo-N.img) and the open files it points to (files.img): regular
// files and directories, character devices such as /dev/null, ptys
// (tty-info.img, tty-data.img; the terminal of a --shell-job is amber's
// own), pipes with the data in them (pipes-data.img), pidfds, FIFOs with
// their data (fifo-data.img) and unlinked files (remap-fpath.img,
// ghost-file-N.img). Sockets are package sockets': files hands it each
// one it meets (sockets.go). It also handles the task's
// fs state (fs-PID.img: cwd, root, umask), whose directories are
// files.img entries too.
//
// Restore is planned (package plan): every file is opened inside the
// restored task by path, moved to its descriptor number and positioned;
// pipes are created with pipe2 and refilled. Objects with several ends
// (pipes, connected sockets, the open files of one unlinked file) are
// made whole by the first task that needs one end; it parks the others
// for the tasks that hold them. Regular files must have the size and
// modification time they had at the dump (regcheck.go).
package files
