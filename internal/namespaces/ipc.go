package namespaces

// IPC namespaces: their settings, the sysctls of kernel/ and fs/mqueue/
// that each IPC namespace has its own of, in ipcns-var-ID.img (one
// IpcVarEntry). Its System V objects are package ipc's.

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	ipcvar "github.com/checkpoint-restore/go-criu/v8/crit/images/ipc-var"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/image"
)

// ipcSysctl is one setting of an IPC namespace and where the entry keeps
// it: a 32-bit or a 64-bit field.
type ipcSysctl struct {
	name string // under /proc/sys
	u32  **uint32
	u64  **uint64
	// optional settings are left out of the entry where the kernel has
	// none, or at their "unset" value -1 (the next_id ones), which
	// cannot be written back.
	optional bool
}

// ipcSysctls lists the settings of e in CRIU's order; kernel/sem, four
// numbers, is apart.
func ipcSysctls(e *ipcvar.IpcVarEntry) []ipcSysctl {
	return []ipcSysctl{
		{name: "kernel/msgmax", u32: &e.MsgCtlmax},
		{name: "kernel/msgmnb", u32: &e.MsgCtlmnb},
		{name: "kernel/auto_msgmni", u32: &e.AutoMsgmni},
		{name: "kernel/msgmni", u32: &e.MsgCtlmni},
		{name: "kernel/shmmax", u64: &e.ShmCtlmax},
		{name: "kernel/shmall", u64: &e.ShmCtlall},
		{name: "kernel/shmmni", u32: &e.ShmCtlmni},
		{name: "kernel/shm_rmid_forced", u32: &e.ShmRmidForced},
		{name: "fs/mqueue/queues_max", u32: &e.MqQueuesMax},
		{name: "fs/mqueue/msg_max", u32: &e.MqMsgMax},
		{name: "fs/mqueue/msgsize_max", u32: &e.MqMsgsizeMax},
		{name: "fs/mqueue/msg_default", u32: &e.MqMsgDefault, optional: true},
		{name: "fs/mqueue/msgsize_default", u32: &e.MqMsgsizeDefault, optional: true},
		{name: "kernel/msg_next_id", u32: &e.MsgNextId, optional: true},
		{name: "kernel/sem_next_id", u32: &e.SemNextId, optional: true},
		{name: "kernel/shm_next_id", u32: &e.ShmNextId, optional: true},
	}
}

// semSysctl holds SEMMSL, SEMMNS, SEMOPM and SEMMNI.
const semSysctl = "kernel/sem"

// dumpIPC writes ipcns-var-ID.img with the settings of pid's IPC
// namespace.
func dumpIPC(dir image.Dir, id uint32, pid int) error {
	e := &ipcvar.IpcVarEntry{}
	err := InNamespace(pid, IPC, func() error { return readIPCSysctls(e) })
	if err != nil {
		return fmt.Errorf("ipc namespace of pid %d: %w", pid, err)
	}
	return image.WriteFile(dir.IpcVarPath(id), image.IpcVar, e)
}

// readIPCSysctls fills e from the calling thread's IPC namespace.
func readIPCSysctls(e *ipcvar.IpcVarEntry) error {
	sem, err := readSysctl(semSysctl)
	if err != nil {
		return err
	}
	for _, f := range strings.Fields(sem) {
		n, err := strconv.ParseUint(f, 10, 32)
		if err != nil {
			return fmt.Errorf("/proc/sys/%s: %q: %w", semSysctl, sem, err)
		}
		e.SemCtls = append(e.SemCtls, uint32(n))
	}
	for _, s := range ipcSysctls(e) {
		v, err := readSysctl(s.name)
		if s.optional && (errors.Is(err, os.ErrNotExist) || v == "-1") {
			continue
		}
		if err != nil {
			return err
		}
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil || (s.u32 != nil && n > 1<<32-1) {
			return fmt.Errorf("/proc/sys/%s: %q is not a number amber can save", s.name, v)
		}
		if s.u32 != nil {
			*s.u32 = proto.Uint32(uint32(n))
		} else {
			*s.u64 = proto.Uint64(n)
		}
	}
	return nil
}

func readSysctl(name string) (string, error) {
	b, err := os.ReadFile("/proc/sys/" + name)
	return strings.TrimSpace(string(b)), err
}

// restoreIPC gives the IPC namespace of pid, a new one, the settings of
// ipcns-var-ID.img.
func restoreIPC(dir image.Dir, id uint32, pid int) error {
	p := dir.IpcVarPath(id)
	e, err := image.ReadOne(p, image.IpcVar, func() *ipcvar.IpcVarEntry { return new(ipcvar.IpcVarEntry) })
	if err != nil {
		return err
	}
	if len(e.GetSemCtls()) != 4 {
		return fmt.Errorf("%s: sem_ctls has %d numbers, want 4", p, len(e.GetSemCtls()))
	}
	err = InNamespace(pid, IPC, func() error { return asSysctlOwner(semSysctl, func() error { return writeIPCSysctls(e) }) })
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	return nil
}

// writeIPCSysctls sets the calling thread's IPC namespace as e says.
func writeIPCSysctls(e *ipcvar.IpcVarEntry) error {
	var sem []string
	for _, n := range e.GetSemCtls() {
		sem = append(sem, strconv.FormatUint(uint64(n), 10))
	}
	if err := writeSysctl(semSysctl, strings.Join(sem, " ")); err != nil {
		return err
	}
	for _, s := range ipcSysctls(e) {
		var v string
		switch {
		case s.u32 != nil && *s.u32 != nil:
			v = strconv.FormatUint(uint64(**s.u32), 10)
		case s.u64 != nil && *s.u64 != nil:
			v = strconv.FormatUint(**s.u64, 10)
		case s.optional:
			continue
		default:
			return fmt.Errorf("%s is missing", s.name)
		}
		if err := writeSysctl(s.name, v); err != nil {
			return err
		}
	}
	return nil
}

func writeSysctl(name, value string) error {
	f, err := os.OpenFile("/proc/sys/"+name, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, werr := f.WriteString(value)
	if err := f.Close(); werr == nil {
		werr = err
	}
	if werr != nil {
		return fmt.Errorf("set %s to %s: %w", name, value, werr)
	}
	return nil
}

// asSysctlOwner runs fn on the calling thread, locked to it, with the
// effective uid of the owner of the namespace's sysctl file name: the
// IPC sysctls of a namespace owned by a user namespace other than the
// initial one are writable by that namespace's root alone (the kernel's
// ipc_permissions), not by amber's root, capabilities or not. The
// permitted capabilities stay (the real and saved uids do not change),
// and going back to uid 0 makes them effective again.
func asSysctlOwner(name string, fn func() error) error {
	var st unix.Stat_t
	if err := unix.Stat("/proc/sys/"+name, &st); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	euid := unix.Geteuid()
	if int(st.Uid) == euid {
		return fn()
	}
	// The raw call changes this thread alone, which InNamespace locked.
	if _, _, errno := unix.RawSyscall(unix.SYS_SETRESUID, ^uintptr(0), uintptr(st.Uid), ^uintptr(0)); errno != 0 {
		return fmt.Errorf("take uid %d, the owner of the namespace's sysctls: %w", st.Uid, errno)
	}
	ferr := fn()
	if _, _, errno := unix.RawSyscall(unix.SYS_SETRESUID, ^uintptr(0), uintptr(euid), ^uintptr(0)); errno != 0 {
		// Without its effective capabilities the thread cannot leave
		// the namespace either: onThread then ends it.
		return fmt.Errorf("give back uid %d: %w", euid, errno)
	}
	return ferr
}
