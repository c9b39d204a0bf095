// Package taskattr dumps and restores the attributes the kernel keeps for
// a process or a thread beside its memory, files, signals and
// credentials: the OOM score adjustment, the audit login UID, the child
// subreaper flag, the scheduling policy and priority, transparent huge
// pages disabled, and the membarrier registrations. Each goes where CRIU
// keeps it (TaskCoreEntry, ThreadCoreEntry, MmEntry), so that crit and
// CRIU read amber's images and amber reads CRIU's. Dump reads them from
// /proc or asks the frozen task; restore plans the calls the new task
// makes to set them again.
package taskattr
