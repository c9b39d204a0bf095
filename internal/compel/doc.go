// Package compel is amber's only door to ptrace, named after CRIU's
// library for the same job. It freezes tasks, reads and writes their
// registers and memory, and makes them run system calls on amber's behalf:
// one at a time (Task.Syscall, a ptrace round trip each) or a whole table
// at once through a few bytes of machine code placed in the task
// (Task.RunTable).
//
// Precondition for every function here: the calling goroutine is locked to
// its OS thread (runtime.LockOSThread) for as long as any Task it created
// or attached is traced. Linux makes the thread that attached the tracer,
// and only it may issue ptrace requests and wait for the tracee.
package compel
