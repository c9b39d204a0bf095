// Package bench holds the C sources of amber's benchmark workloads and of
// its native floor, for internal/bench to compile at bench time.
//
// The sources are in src/, a directory of their own because the go tool
// takes .c files beside .go files for cgo. Each workload (mem.c, vmas.c,
// filemap.c, threads.c, tree.c, built with bench.c and bench.h) follows the
// zdtm protocol: it sets up its state, prints "ready", waits for SIGTERM,
// checks its state and prints PASS. floor.c does only the unavoidable
// memory work of a restore from the same images and prints how long that
// took.
package bench

import "embed"

// Sources holds every .c and .h file of src/, under the names src/NAME.
//
//go:embed src/*.c src/*.h
var Sources embed.FS
