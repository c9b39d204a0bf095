// Package files dumps and restores a task's descriptor table
// (fdinfo-N.img) and the open files it points to (files.img): regular
// files and directories, character devices such as /dev/null, the
// controlling terminal of a --shell-job, and pipes with the data in them
// (pipes-data.img). It also handles the task's fs state (fs-PID.img: cwd,
// root, umask), whose directories are files.img entries too.
//
// Restore is planned (package plan): every file is opened inside the
// restored task by path, moved to its descriptor number and positioned;
// pipes are created with pipe2 and refilled.
package files
