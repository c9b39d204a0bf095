// Package bench is amber's benchmark: it runs small C workloads (the
// programs of test/bench) through `amber dump` and `amber restore`, times
// both, and sets each restore against a native floor measured in the same
// run, on the same images, with the machine in the same state.
//
// A round of one workload goes:
//
//  1. start the workload (own session, stdin /dev/null, output to a file)
//     and wait for it to print `ready`;
//  2. `amber dump -t PID -D images`, timed, and reap the killed original;
//  3. sync, then run the floor (test/bench/floor.c) on the images: it maps
//     what the restore must map and preads the pages image into it, and
//     times itself;
//  4. `amber restore -D images -d --pidfile F`, timed;
//  5. SIGTERM the restored workload, reap it, and require PASS: a bench
//     that restores a broken process is worthless.
//
// Other workloads run only when named, as they take a while:
// migrations by amber migrate over loopback (migrate.go), a lazy restore
// beside a plain one (lazyN, lazy.go), and a dump to a page server
// beside one to disk (pageserverN, pageserver.go); the last two can run
// a CRIU binary's same commands beside amber's.
//
// Times are wall clock; amber's peak RSS is the child's rusage maxrss.
// Run reports, per workload, the best (minimum) and median of N rounds.
// It can also draw restore time against memory size, for amber and the
// floor, as an SVG plot.
//
// The bench must run as root. It makes the calling process a child
// subreaper, since dumped and detached-restored workloads outlive the amber
// command that touched them, and reaps them itself.
package bench
