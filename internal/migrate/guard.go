package migrate

// The guard of a lazy restore: the restored tasks' missing pages come
// through userfaultfds only amber receive holds. Should amber die before
// every page is in, the kernel drops those registrations and the tasks
// would read zeroes where their memory is missing, while the source,
// whose session was not ended, thaws and runs on. The guard is a shell
// outside the tree that holds the read end of a pipe from amber: if the
// pipe closes before amber wrote that every page is in, it kills the
// restored processes (each only if its start time is still the one
// noted, so that a PID used again is left alone). A copy may run for a
// moment on zeroes between amber's death and the kill.

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"

	"amber/internal/proc"
)

// guardScript reads the processes to kill ("PID:STARTTIME ...") and a
// word; without "in" it kills each whose start time (field 22 of stat,
// the 20th after "PID (COMM) ") is the one noted.
const guardScript = `read -r list; read -r word; [ "$word" = in ] && exit 0
for e in $list; do
	pid=${e%%:*}; start=${e#*:}
	now=$(sed 's/.*) //' /proc/$pid/stat 2>/dev/null | cut -d' ' -f20)
	[ "$now" = "$start" ] && kill -9 "$pid"
done
exit 0`

// guard is a running guard.
type guard struct {
	cmd      *exec.Cmd
	w        io.WriteCloser
	watching bool // the list of the tree's processes is written
}

// startGuard starts a guard. It watches nothing until watch; fired
// before, it kills nothing.
func startGuard() (*guard, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("guard of the restored tree: %w", err)
	}
	defer r.Close()
	cmd := exec.Command("/bin/sh", "-c", guardScript)
	cmd.Stdin = r
	if err := cmd.Start(); err != nil {
		w.Close()
		return nil, fmt.Errorf("guard of the restored tree: %w", err)
	}
	return &guard{cmd: cmd, w: w}, nil
}

// guardStart is a guard started in the background, or why it did not
// start.
type guardStart struct {
	g   *guard
	err error
}

// startGuardAhead starts the guard of a lazy restore in the background
// at the session's first pages, once: starting a shell takes a few
// milliseconds (5 here), which a guard started at the restore added to
// the downtime, the source's tree frozen meanwhile.
func (r *receiver) startGuardAhead() {
	if r.guardStart != nil {
		return
	}
	started := make(chan guardStart, 1)
	go func() {
		g, err := startGuard()
		started <- guardStart{g, err}
	}()
	r.guardStart = started
}

// takeGuard gives the restore the guard started ahead, or starts one.
func (r *receiver) takeGuard() (*guard, error) {
	if r.guardStart == nil {
		return startGuard()
	}
	s := <-r.guardStart
	r.guardStart = nil
	return s.g, s.err
}

// dropGuard ends a guard started ahead that no restore took: it watches
// nothing, so it kills nothing.
func (r *receiver) dropGuard() {
	if r.guardStart == nil {
		return
	}
	if s := <-r.guardStart; s.err == nil {
		s.g.fire()
	}
	r.guardStart = nil
}

// watch has the guard watch the restored tree rooted at pid, its tasks
// held.
func (g *guard) watch(pid int) error {
	list, err := treeStarts(pid)
	if err != nil {
		return fmt.Errorf("guard of the restored tree: %w", err)
	}
	if _, err := io.WriteString(g.w, strings.Join(list, " ")+"\n"); err != nil {
		return fmt.Errorf("guard of the restored tree: %w", err)
	}
	g.watching = true
	return nil
}

// release ends the guard leaving the tree alone: every page is in. A
// nil guard does nothing.
func (g *guard) release() error {
	if g == nil {
		return nil
	}
	word := "in\n"
	if !g.watching {
		word = "\n" + word // an empty list
	}
	_, err := io.WriteString(g.w, word)
	g.w.Close()
	if werr := g.cmd.Wait(); err == nil {
		err = werr
	}
	return err
}

// fire ends the guard killing the tree. A nil guard does nothing.
func (g *guard) fire() {
	if g == nil {
		return
	}
	g.w.Close()
	g.cmd.Wait()
}

// treeStarts lists the processes of the tree rooted at pid as
// "PID:STARTTIME".
func treeStarts(pid int) ([]string, error) {
	var out []string
	err := walkTree(pid, func(p int) error {
		st, err := proc.ReadStat(p)
		if err == nil {
			out = append(out, fmt.Sprintf("%d:%d", p, st.StartTime))
		}
		return err
	})
	return out, err
}
