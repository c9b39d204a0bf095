/*
 * vdso_kernels - vdso_time for a restore on another kernel, after
 * another boot: the vDSO functions glibc resolved at start (pointers into
 * the dumped kernel's vDSO) still work and agree with the system calls,
 * and CLOCK_MONOTONIC still advances; but it is not compared across the
 * wait, since the restoring machine's clock counts from its own boot.
 */
#define OTHER_BOOT 1
#include "vdso_time.c"
