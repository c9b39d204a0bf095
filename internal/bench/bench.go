package bench

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
)

// Options say what Run measures and where it reports.
type Options struct {
	// AmberPath is the amber binary to drive (default: this executable).
	AmberPath string
	// AmberArgs are extra arguments to every amber dump and restore, such
	// as -v4 -o amber.log (a relative log lands in the images directory
	// and counts in the image size; logging at -v4 slows amber down).
	AmberArgs []string
	// Rounds is how many times each workload runs (default 3).
	Rounds int
	// Workloads are the names of the workloads to run (default: all, see
	// WorkloadNames).
	Workloads []string
	// PlotPath, if set, is where to write an SVG plot of restore time
	// against memory size, for amber and the floor.
	PlotPath string
	// Sizes are the memory sizes of the plot in MiB (default 64, 128,
	// 256, 512, 1024).
	Sizes []int
	// CriuPath, if set, is a CRIU binary that the lazy and page server
	// workloads also run, beside amber, for comparison.
	CriuPath string
	// MigrateMiB is the memory of the migration workloads (default
	// DefaultMigrateMiB).
	MigrateMiB int
	// Out receives progress and the report (default os.Stdout).
	Out io.Writer
	// WorkDir holds the compiled programs and each round's images
	// (default: a new directory under /var/tmp, removed after a
	// successful run). It should be on disk: images on tmpfs would sit in
	// RAM twice over.
	WorkDir string
}

// withDefaults fills in the defaults of unset options.
func (o Options) withDefaults() (Options, error) {
	if o.AmberPath == "" {
		exe, err := os.Executable()
		if err != nil {
			return o, fmt.Errorf("bench: amber binary: %w", err)
		}
		o.AmberPath = exe
	}
	abs, err := filepath.Abs(o.AmberPath)
	if err != nil {
		return o, fmt.Errorf("bench: amber binary: %w", err)
	}
	o.AmberPath = abs
	if o.CriuPath != "" {
		if o.CriuPath, err = exec.LookPath(o.CriuPath); err == nil {
			o.CriuPath, err = filepath.Abs(o.CriuPath)
		}
		if err != nil {
			return o, fmt.Errorf("bench: CRIU binary: %w", err)
		}
	}
	if o.Rounds <= 0 {
		o.Rounds = 3
	}
	if len(o.Sizes) == 0 {
		o.Sizes = []int{64, 128, 256, 512, 1024}
	}
	for _, mib := range o.Sizes {
		if mib <= 0 {
			return o, fmt.Errorf("bench: plot size %d MiB: must be positive", mib)
		}
	}
	if o.Out == nil {
		o.Out = os.Stdout
	}
	if o.MigrateMiB <= 0 {
		o.MigrateMiB = DefaultMigrateMiB
	}
	return o, nil
}

// Run runs the benchmark: each selected workload Rounds times through
// dump, floor and restore, then prints a table of the best and median
// figures on Out, and draws the plot if PlotPath is set. It needs root and
// gcc. A workload amber does not support yet (threads100, tree50) is
// reported as such; any other failure, including a restored workload that
// does not pass its own check, stops the bench with an error.
func Run(opts Options) error {
	o, err := opts.withDefaults()
	if err != nil {
		return err
	}
	rest, ms := splitMigrations(o.Workloads)
	rest, ss, err := splitSized(rest)
	if err != nil {
		return err
	}
	var ws []workload
	if len(o.Workloads) == 0 || len(rest) > 0 {
		if ws, err = selectWorkloads(rest); err != nil {
			return err
		}
	}
	if err := checkHost(o.AmberPath); err != nil {
		return err
	}
	undo, err := becomeSubreaper()
	if err != nil {
		return err
	}
	defer undo()
	workDir, created, err := makeWorkDir(o.WorkDir)
	if err != nil {
		return err
	}
	if err := runIn(o, ws, ms, ss, workDir); err != nil {
		return fmt.Errorf("%w (work directory kept: %s)", err, workDir)
	}
	if created {
		return os.RemoveAll(workDir)
	}
	return nil
}

// runIn runs the bench with workDir as its work directory.
func runIn(o Options, ws []workload, ms []migration, ss []sizedWorkload, workDir string) error {
	all := ws
	if o.PlotPath != "" {
		all = append(append([]workload{}, ws...), sweepWorkloads(o.Sizes)...)
	}
	progs := programs(all)
	if len(ms) > 0 {
		progs = append(progs, "dirty")
	}
	if len(ss) > 0 && !slices.Contains(progs, "mem") {
		progs = append(progs, "mem")
	}
	binDir, err := compile(workDir, progs)
	if err != nil {
		return err
	}
	e := env{amber: o.AmberPath, amberArgs: o.AmberArgs, binDir: binDir, workDir: workDir, criu: o.CriuPath}
	fmt.Fprintf(o.Out, "amber bench: %s, %d rounds, work directory %s\n", o.AmberPath, o.Rounds, workDir)
	if len(ms) > 0 {
		if err := runMigrations(e, ms, o.MigrateMiB, o.Rounds, o.Out); err != nil {
			return err
		}
	}
	if err := runSized(e, ss, o.Rounds, o.Out); err != nil {
		return err
	}
	if len(ws) == 0 {
		return nil
	}
	results, runErr := runWorkloads(e, ws, o.Rounds, o.Out)
	if len(results) > 0 {
		fmt.Fprintln(o.Out)
		if err := writeReport(o.Out, results); err != nil {
			return err
		}
	}
	if runErr != nil || o.PlotPath == "" {
		return runErr
	}
	return runSweep(e, o.Sizes, o.Rounds, o.Out, o.PlotPath)
}

// checkHost checks that the bench can run here.
func checkHost(amber string) error {
	if os.Geteuid() != 0 {
		return errors.New("bench: must run as root")
	}
	if _, err := os.Stat(amber); err != nil {
		return fmt.Errorf("bench: amber binary: %w", err)
	}
	if _, err := exec.LookPath("gcc"); err != nil {
		return fmt.Errorf("bench: the workloads are compiled with gcc: %w", err)
	}
	return nil
}

// makeWorkDir returns dir, created if needed, or a new directory under
// /var/tmp (on disk, unlike /tmp on some systems and /dev/shm); created
// says whether Run made it and should remove it.
func makeWorkDir(dir string) (string, bool, error) {
	if dir != "" {
		abs, err := filepath.Abs(dir)
		if err == nil {
			err = os.MkdirAll(abs, 0o755)
		}
		if err != nil {
			return "", false, fmt.Errorf("bench: work directory: %w", err)
		}
		return abs, false, nil
	}
	dir, err := os.MkdirTemp("/var/tmp", "amber-bench-")
	if err != nil {
		return "", false, fmt.Errorf("bench: work directory: %w", err)
	}
	return dir, true, nil
}

// runWorkloads runs each workload's rounds, reporting progress on out. On
// error it returns the results of the workloads done so far.
func runWorkloads(e env, ws []workload, rounds int, out io.Writer) ([]result, error) {
	var results []result
	for _, w := range ws {
		res, err := runWorkload(e, w, rounds, out)
		if err != nil {
			return results, err
		}
		results = append(results, res)
	}
	return results, nil
}

// runWorkload runs rounds rounds of w, each in a directory of its own that
// is removed after a good round and kept after a failed one.
func runWorkload(e env, w workload, rounds int, out io.Writer) (result, error) {
	res := result{name: w.name}
	for i := 1; i <= rounds; i++ {
		dir := filepath.Join(e.workDir, fmt.Sprintf("%s-%d", w.name, i))
		r, err := runRound(e, w, dir)
		if line, ok := isUnsupported(err); ok {
			fmt.Fprintf(out, "%s: not supported yet: %s\n", w.name, line)
			res.unsupported = line
			return res, os.RemoveAll(dir)
		}
		if err != nil {
			return res, fmt.Errorf("bench: %s round %d (in %s): %w", w.name, i, dir, err)
		}
		fmt.Fprintf(out, "%s round %d/%d: dump %s, restore %s, floor %s\n",
			w.name, i, rounds, fmtDuration(r.dump.wall), fmtDuration(r.restore.wall), fmtFloor(r.floor.inProcess))
		res.rounds = append(res.rounds, r)
		if err := os.RemoveAll(dir); err != nil {
			return res, fmt.Errorf("bench: %w", err)
		}
	}
	return res, nil
}
