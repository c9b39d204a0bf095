// Package proc parses the files under /proc/PID that a dump reads: the
// memory map (smaps), stat, status, limits, auxv, fdinfo, and the fd, task
// and children listings.
//
// Each file has a Parse function that takes the file's text, so it can be
// tested on captured samples and fuzzed, and a Read function that reads the
// live file for a pid. Errors from Read functions name the file, and from
// Parse functions the line or field, e.g.
// "/proc/123/stat: field 28 (startstack): ...".
//
// A process that does not exist, or exits while being read, yields an
// error for which errors.Is(err, fs.ErrNotExist) is true. Callers are
// expected to have frozen or seized the tree first; nothing here retries
// reads of a process that is still changing.
package proc
