package creds

import (
	"encoding/binary"
	"slices"

	"golang.org/x/sys/unix"

	"amber/internal/plan"
)

// kernel models how Linux 6.18 changes a thread's credentials for the
// calls PlanRestore plans (kernel/sys.c, kernel/capability.c,
// security/commoncap.c), so that a plan can be run on paper: a call the
// kernel refuses returns its errno, one it allows changes c as the kernel
// would, fixups included.
type kernel struct {
	c    Creds
	prog *plan.Program
}

// Model constants: the capabilities of this kernel, the securebits it
// accepts, and the capabilities an fsuid change away from 0 drops
// (CAP_FS_SET).
const (
	modelLastCap = 40
	modelSecbits = 0x555 | 0x555<<1
	modelFSCaps  = 1<<0 | 1<<1 | 1<<2 | 1<<3 | 1<<4 | 1<<9 | 1<<27 | 1<<32
)

// run runs every call of prog's section name, stopping at the first
// error as the executor does; it returns the index of the failed call.
func (k *kernel) run(name string) (int, unix.Errno) {
	sec, _ := k.prog.Section(name)
	for i := sec.Start; i < sec.End; i++ {
		if e := k.call(k.prog.Calls[i]); e != 0 {
			return i, e
		}
	}
	return -1, 0
}

func (k *kernel) call(c plan.Call) unix.Errno {
	a := c.Args
	switch c.Nr {
	case unix.SYS_SETGROUPS:
		return k.setgroups(k.words(a[1], int(a[0])))
	case unix.SYS_SETRESGID:
		return k.setres(&k.c.Gid, capSetGID, a, false)
	case unix.SYS_SETRESUID:
		return k.setres(&k.c.Uid, capSetUID, a, true)
	case unix.SYS_SETFSGID:
		k.setfs(&k.c.Gid, capSetGID, uint32(a[0]), false)
	case unix.SYS_SETFSUID:
		k.setfs(&k.c.Uid, capSetUID, uint32(a[0]), true)
	case unix.SYS_CAPSET:
		return k.capset(k.words(a[0], 2), k.words(a[1], 3*capWords))
	case unix.SYS_PRCTL:
		return k.prctl(a)
	default:
		return unix.ENOSYS
	}
	return 0
}

// words reads n little-endian u32 at addr of the scratch area.
func (k *kernel) words(addr uint64, n int) []uint32 {
	out := make([]uint32, n)
	off := addr - k.prog.Base
	for i := range out {
		out[i] = binary.LittleEndian.Uint32(k.prog.Image[off+4*uint64(i):])
	}
	return out
}

func (k *kernel) capable(n int) bool { return has(k.c.CapEff, n) }

func (k *kernel) secure(bit uint32) bool { return k.c.Secbits&bit != 0 }

func (k *kernel) setgroups(groups []uint32) unix.Errno {
	if !k.capable(capSetGID) {
		return unix.EPERM
	}
	k.c.Groups = groups
	return 0
}

// setres is setresuid or setresgid: without the capability each new id
// must be one of the current three; fsuid follows the effective one.
func (k *kernel) setres(ids *[4]uint32, capability int, a [6]uint64, uid bool) unix.Errno {
	old := *ids
	next := old
	for i := Real; i <= Saved; i++ {
		id := uint32(a[i])
		if !k.capable(capability) && !slices.Contains(old[:3], id) {
			return unix.EPERM
		}
		next[i] = id
	}
	next[FS] = next[Effective]
	*ids = next
	if uid && !k.secure(SecbitNoSetuidFixup) {
		k.fixSetuid(old)
	}
	return 0
}

// fixSetuid is cap_emulate_setxuid: leaving uid 0 loses capabilities.
func (k *kernel) fixSetuid(old [4]uint32) {
	wasRoot := old[Real] == 0 || old[Effective] == 0 || old[Saved] == 0
	u := k.c.Uid
	if wasRoot && u[Real] != 0 && u[Effective] != 0 && u[Saved] != 0 {
		if !k.secure(SecbitKeepCaps) {
			k.c.CapPrm, k.c.CapEff = 0, 0
		}
		k.c.CapAmb = 0
	}
	if old[Effective] == 0 && u[Effective] != 0 {
		k.c.CapEff = 0
	}
	if old[Effective] != 0 && u[Effective] == 0 {
		k.c.CapEff = k.c.CapPrm
	}
}

// setfs is setfsuid or setfsgid, which never fail: a change not allowed
// is ignored.
func (k *kernel) setfs(ids *[4]uint32, capability int, id uint32, uid bool) {
	old := ids[FS]
	if !k.capable(capability) && !slices.Contains(ids[:], id) {
		return
	}
	ids[FS] = id
	if !uid || k.secure(SecbitNoSetuidFixup) {
		return
	}
	if old == 0 && id != 0 {
		k.c.CapEff &^= modelFSCaps
	}
	if old != 0 && id == 0 {
		k.c.CapEff |= k.c.CapPrm & modelFSCaps
	}
}

func (k *kernel) capset(hdr, data []uint32) unix.Errno {
	if hdr[0] != capVersion3 || hdr[1] != 0 {
		return unix.EINVAL
	}
	var eff, prm, inh uint64
	for w := 0; w < capWords; w++ {
		shift := 32 * w
		eff |= uint64(data[3*w]) << shift
		prm |= uint64(data[3*w+1]) << shift
		inh |= uint64(data[3*w+2]) << shift
	}
	c := &k.c
	switch {
	case !k.capable(capSetPCAP) && inh&^(c.CapInh|c.CapPrm) != 0,
		inh&^(c.CapInh|c.CapBnd) != 0,
		prm&^c.CapPrm != 0,
		eff&^prm != 0:
		return unix.EPERM
	}
	c.CapEff, c.CapPrm, c.CapInh = eff, prm, inh
	c.CapAmb &= prm & inh
	return 0
}

func (k *kernel) prctl(a [6]uint64) unix.Errno {
	switch a[0] {
	case unix.PR_CAPBSET_DROP:
		if !k.capable(capSetPCAP) {
			return unix.EPERM
		}
		if a[1] > modelLastCap {
			return unix.EINVAL
		}
		k.c.CapBnd &^= 1 << a[1]
	case unix.PR_SET_SECUREBITS:
		return k.setSecurebits(uint32(a[1]))
	case unix.PR_CAP_AMBIENT:
		return k.ambient(a[1], a[2])
	case unix.PR_SET_NO_NEW_PRIVS:
		k.c.NoNewPrivs = true
	default:
		return unix.EINVAL
	}
	return 0
}

func (k *kernel) setSecurebits(bits uint32) unix.Errno {
	old := k.c.Secbits
	locks := old & secbitLocks
	if locks>>1&(old^bits) != 0 || locks&^bits != 0 || bits&^modelSecbits != 0 || !k.capable(capSetPCAP) {
		return unix.EPERM
	}
	k.c.Secbits = bits
	return 0
}

func (k *kernel) ambient(op, n uint64) unix.Errno {
	switch op {
	case unix.PR_CAP_AMBIENT_CLEAR_ALL:
		k.c.CapAmb = 0
	case unix.PR_CAP_AMBIENT_RAISE:
		if n > modelLastCap {
			return unix.EINVAL
		}
		if !has(k.c.CapPrm&k.c.CapInh, int(n)) || k.secure(secbitNoAmbientRaise) {
			return unix.EPERM
		}
		k.c.CapAmb |= 1 << n
	default:
		return unix.EINVAL
	}
	return 0
}
