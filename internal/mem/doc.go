// Package mem dumps and restores a task's memory: its VMAs (mm-PID.img),
// which pages hold data (pagemap-PID.img) and their contents (pages-N.img).
//
// Dump reads the layout from /proc/PID/smaps, finds the pages worth saving
// with the PAGEMAP_SCAN ioctl (before Linux 6.7, from /proc/PID/pagemap:
// pagemap.go) and copies them with process_vm_readv straight into the
// pages image, a few MiB at a time. Incremental dumps track written pages
// by userfaultfd write protection, or by soft-dirty bits (track.go).
//
// Restore is planned (package plan): every VMA is mapped at its final
// address, each distinct file opened once and closed after its last
// mapping, and the task itself fills private memory with preadv from the
// pages image: one copy, from the page cache, no premap area, no mremap.
// Only the kernel's own vdso block is moved into place with mremap; a
// vdso of another kernel gets a proxy (vdso.go).
package mem
