package test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
)

// buildAmber builds ./cmd/amber of the module rooted at root into bin,
// static as the Makefile builds it.
func buildAmber(root, bin string) error {
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/amber")
	cmd.Dir, cmd.Env = root, append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/amber: %w\n%s", err, out)
	}
	return nil
}

// compilePrograms compiles each program's static/NAME.c with the zdtm
// library of zdtmDir into outDir/NAME, several at a time. The result maps
// each name that failed to its error.
func compilePrograms(zdtmDir, outDir string, progs []program) map[string]error {
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		errs = map[string]error{}
		sem  = make(chan struct{}, runtime.NumCPU())
	)
	for _, p := range progs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			if err := compileProgram(zdtmDir, outDir, p); err != nil {
				mu.Lock()
				errs[p.name] = err
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errs
}

func compileProgram(zdtmDir, outDir string, p program) error {
	src := filepath.Join("static", p.name+".c")
	if _, err := os.Stat(filepath.Join(zdtmDir, src)); errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%s: no such test program", filepath.Join(zdtmDir, src))
	}
	args := []string{"-O2", "-g", "-Wall", "-Werror"}
	args = append(args, p.cflags...)
	args = append(args, "-o", filepath.Join(outDir, p.name), src, "lib/zdtm.c", "-Ilib")
	cmd := exec.Command("gcc", args...)
	cmd.Dir = zdtmDir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("gcc %s: %w\n%s", src, err, out)
	}
	return nil
}
