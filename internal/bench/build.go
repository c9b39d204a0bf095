package bench

import (
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"

	csrc "amber/test/bench"
)

// floorProg is the name of the floor program.
const floorProg = "floor"

// compile writes the embedded C sources to workDir/src and compiles the
// floor and each of progs into workDir/bin. It returns the bin directory.
func compile(workDir string, progs []string) (string, error) {
	src, bin := filepath.Join(workDir, "src"), filepath.Join(workDir, "bin")
	if err := extractSources(src); err != nil {
		return "", err
	}
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return "", fmt.Errorf("bench: %w", err)
	}
	if err := gcc(src, filepath.Join(bin, floorProg), floorProg+".c"); err != nil {
		return "", err
	}
	for _, p := range progs {
		if err := gcc(src, filepath.Join(bin, p), p+".c", "bench.c", "-pthread"); err != nil {
			return "", err
		}
	}
	return bin, nil
}

// extractSources copies the embedded .c and .h files into dir.
func extractSources(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	names, err := fs.Glob(csrc.Sources, "src/*")
	if err != nil {
		return fmt.Errorf("bench: list sources: %w", err)
	}
	for _, name := range names {
		b, err := fs.ReadFile(csrc.Sources, name)
		if err != nil {
			return fmt.Errorf("bench: read source %s: %w", name, err)
		}
		if err := os.WriteFile(filepath.Join(dir, path.Base(name)), b, 0o644); err != nil {
			return fmt.Errorf("bench: write source: %w", err)
		}
	}
	return nil
}

// gcc compiles srcs (and flags) in dir into out.
func gcc(dir, out string, srcs ...string) error {
	args := append([]string{"-O2", "-Wall", "-Werror", "-o", out}, srcs...)
	cmd := exec.Command("gcc", args...)
	cmd.Dir = dir
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("bench: gcc -o %s: %w\n%s", filepath.Base(out), err, b)
	}
	return nil
}
