// Package mem dumps and restores a task's memory: its VMAs (mm-PID.img),
// which pages hold data (pagemap-PID.img) and their contents (pages-N.img).
//
// Dump reads the layout from /proc/PID/smaps, finds the pages worth saving
// with the PAGEMAP_SCAN ioctl and copies them with process_vm_readv
// straight into the pages image, a few MiB at a time.
//
// Restore is planned (package plan): every VMA is mapped at its final
// address, each distinct file opened once and closed after its last
// mapping, and the task itself fills private memory with preadv from the
// pages image: one copy, from the page cache, no premap area, no mremap.
// Only the kernel's own vdso block is moved into place with mremap.
package mem
