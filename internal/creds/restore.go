package creds

import (
	"encoding/binary"
	"fmt"
	"slices"

	"golang.org/x/sys/unix"

	"amber/internal/plan"
)

// Securebits (linux/securebits.h). Bit n+1 of an even n locks bit n.
const (
	SecbitNoSetuidFixup = 1 << 2 // setuid and friends leave capabilities alone
	SecbitKeepCaps      = 1 << 4 // leaving uid 0 keeps the permitted set
	// secbitNoAmbientRaise makes PR_CAP_AMBIENT_RAISE fail.
	secbitNoAmbientRaise = 1 << 6
	// secbitLocks are the lock bits of every securebit.
	secbitLocks = 0xaaaaaaaa
)

// capVersion3 is _LINUX_CAPABILITY_VERSION_3: 64-bit sets, two words.
const capVersion3 = 0x20080522

// PlanRestore plans the calls that turn a thread with credentials have
// (what it inherited from amber) into one with want, in an order the
// kernel's rules (security/commoncap.c) allow for every combination amber
// can grant (CRIU's restorer sets the securebits before the bounding set
// and the ambient set, and so fails on ambient capabilities raised before
// SECBIT_NO_CAP_AMBIENT_RAISE, or on inheritable ones outside the bounding
// set):
//
//  1. SECBIT_NO_SETUID_FIXUP, while the identity changes, so that leaving
//     uid 0 clears no capability set;
//  2. supplementary groups, setresgid and setfsgid, setresuid and setfsuid;
//  3. the inheritable set, before the bounding set is narrowed: a task may
//     hold inheritable capabilities outside its bounding set, and capset
//     refuses to add them once they are out of it;
//  4. PR_CAPBSET_DROP of each capability the bounding set loses;
//  5. ambient capabilities, which need to be permitted and inheritable and
//     SECBIT_NO_CAP_AMBIENT_RAISE to be off;
//  6. the dumped securebits, locks included, which need CAP_SETPCAP;
//  7. the permitted and effective sets, which may drop CAP_SETPCAP;
//  8. no_new_privs, which can never be undone.
//
// It returns the credentials the thread will have: want, but for the
// bounding set, which keeps no capability amber's own lacks (a loss the
// warnings report: the set only limits what the task may gain later).
// Granting a permitted, effective, inheritable or ambient capability
// that amber does not hold is refused, naming the capability.
func PlanRestore(b *plan.Builder, want, have Creds) (Creds, []string, error) {
	if err := want.consistent(); err != nil {
		return Creds{}, nil, err
	}
	if extra := want.CapPrm &^ have.CapPrm; extra != 0 {
		return Creds{}, nil, fmt.Errorf("creds: permitted %s, which amber lacks", CapList(extra))
	}
	s := &restorer{b: b, cur: have, want: want}
	for _, step := range []func() error{s.identity, s.inheritable, s.bounding, s.ambient, s.securebits} {
		if err := step(); err != nil {
			return Creds{}, nil, err
		}
	}
	s.capabilities()
	s.noNewPrivs()
	return s.cur, s.warnings, nil
}

// consistent checks the invariants the kernel keeps for every task,
// which a well-formed image has too.
func (c Creds) consistent() error {
	if extra := c.CapEff &^ c.CapPrm; extra != 0 {
		return fmt.Errorf("creds: effective %s not permitted", CapList(extra))
	}
	if extra := c.CapAmb &^ (c.CapPrm & c.CapInh); extra != 0 {
		return fmt.Errorf("creds: ambient %s not both permitted and inheritable", CapList(extra))
	}
	return nil
}

// restorer plans one thread's credentials; cur is what the thread will
// have after the calls planned so far.
type restorer struct {
	b         *plan.Builder
	cur, want Creds
	warnings  []string
}

// may says whether the thread holds capability n at this point.
func (s *restorer) may(n int) bool { return has(s.cur.CapEff, n) }

// identity sets groups, gids and uids when they differ, with the setuid
// fixup off if the thread has capabilities to lose.
func (s *restorer) identity() error {
	c, w := &s.cur, s.want
	if slices.Equal(c.Groups, w.Groups) && c.Gid == w.Gid && c.Uid == w.Uid {
		return nil
	}
	if !s.may(capSetUID) || !s.may(capSetGID) {
		return fmt.Errorf("creds: uid %v gid %v groups %v need CAP_SETUID and CAP_SETGID, which amber lacks", w.Uid, w.Gid, w.Groups)
	}
	if c.Secbits&SecbitNoSetuidFixup == 0 && c.CapPrm|c.CapAmb != 0 {
		if err := s.setSecurebits(c.Secbits|SecbitNoSetuidFixup, "keep capabilities while the uid changes"); err != nil {
			return err
		}
	}
	if !slices.Equal(c.Groups, w.Groups) {
		groups := make([]byte, 0, 4*len(w.Groups))
		for _, g := range w.Groups {
			groups = binary.LittleEndian.AppendUint32(groups, g)
		}
		s.b.Call("setgroups", unix.SYS_SETGROUPS, uint64(len(w.Groups)), s.b.Bytes(groups))
		c.Groups = slices.Clone(w.Groups)
	}
	if c.Gid != w.Gid {
		s.b.Call("setresgid", unix.SYS_SETRESGID, uint64(w.Gid[Real]), uint64(w.Gid[Effective]), uint64(w.Gid[Saved]))
		if w.Gid[FS] != w.Gid[Effective] {
			s.b.Call("setfsgid", unix.SYS_SETFSGID, uint64(w.Gid[FS]))
		}
		c.Gid = w.Gid
	}
	if c.Uid != w.Uid {
		s.b.Call("setresuid", unix.SYS_SETRESUID, uint64(w.Uid[Real]), uint64(w.Uid[Effective]), uint64(w.Uid[Saved]))
		if w.Uid[FS] != w.Uid[Effective] {
			s.b.Call("setfsuid", unix.SYS_SETFSUID, uint64(w.Uid[FS]))
		}
		c.Uid = w.Uid
	}
	return nil
}

// inheritable sets the inheritable set, the others kept as they are.
func (s *restorer) inheritable() error {
	inh := s.want.CapInh
	if inh == s.cur.CapInh {
		return nil
	}
	if out := inh &^ (s.cur.CapInh | s.cur.CapBnd); out != 0 {
		return fmt.Errorf("creds: inheritable %s outside amber's bounding set", CapList(out))
	}
	if out := inh &^ (s.cur.CapInh | s.cur.CapPrm); out != 0 && !s.may(capSetPCAP) {
		return fmt.Errorf("creds: inheritable %s, which amber lacks and cannot grant without CAP_SETPCAP", CapList(out))
	}
	s.capset("set inheritable capabilities", s.cur.CapEff, s.cur.CapPrm, inh)
	return nil
}

// bounding drops from the bounding set what the dumped one lacks.
func (s *restorer) bounding() error {
	if lost := s.want.CapBnd &^ s.cur.CapBnd; lost != 0 {
		s.warnings = append(s.warnings, fmt.Sprintf("bounding set restored without %s, which amber's own lacks", CapList(lost)))
	}
	drop := s.cur.CapBnd &^ s.want.CapBnd
	if drop == 0 {
		return nil
	}
	if !s.may(capSetPCAP) {
		return fmt.Errorf("creds: dropping %s from the bounding set needs CAP_SETPCAP, which amber lacks", CapList(drop))
	}
	for _, n := range capBits(drop) {
		s.b.Call("drop "+CapName(n)+" from the bounding set", unix.SYS_PRCTL, unix.PR_CAPBSET_DROP, uint64(n))
	}
	s.cur.CapBnd &^= drop
	return nil
}

// ambient clears the ambient set if it has more than the dumped one,
// then raises what it lacks.
func (s *restorer) ambient() error {
	if s.cur.CapAmb&^s.want.CapAmb != 0 {
		s.b.Call("clear ambient capabilities", unix.SYS_PRCTL, unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL)
		s.cur.CapAmb = 0
	}
	raise := s.want.CapAmb &^ s.cur.CapAmb
	if raise == 0 {
		return nil
	}
	if s.cur.Secbits&secbitNoAmbientRaise != 0 {
		return fmt.Errorf("creds: ambient %s: amber's securebits forbid raising ambient capabilities", CapList(raise))
	}
	for _, n := range capBits(raise) {
		s.b.Call("raise ambient "+CapName(n), unix.SYS_PRCTL, unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_RAISE, uint64(n))
	}
	s.cur.CapAmb |= raise
	return nil
}

// securebits sets the dumped securebits, locks included.
func (s *restorer) securebits() error {
	if s.want.Secbits == s.cur.Secbits {
		return nil
	}
	return s.setSecurebits(s.want.Secbits, "set securebits")
}

// setSecurebits plans PR_SET_SECUREBITS, which the kernel allows with
// CAP_SETPCAP when no locked bit changes and no lock is lifted.
func (s *restorer) setSecurebits(bits uint32, what string) error {
	old := s.cur.Secbits
	switch {
	case !s.may(capSetPCAP):
		return fmt.Errorf("creds: securebits %#x need CAP_SETPCAP, which amber lacks", bits)
	case (old&secbitLocks)>>1&(old^bits) != 0 || old&secbitLocks&^bits != 0:
		return fmt.Errorf("creds: securebits %#x: amber's own %#x are locked", bits, old)
	}
	s.b.Call(fmt.Sprintf("%s %#x", what, bits), unix.SYS_PRCTL, unix.PR_SET_SECUREBITS, uint64(bits))
	s.cur.Secbits = bits
	return nil
}

// capabilities sets the permitted and effective sets: last, since they
// may drop CAP_SETPCAP, which the steps before need.
func (s *restorer) capabilities() {
	if w := s.want; w.CapPrm != s.cur.CapPrm || w.CapEff != s.cur.CapEff {
		s.capset("set permitted and effective capabilities", w.CapEff, w.CapPrm, s.cur.CapInh)
	}
}

// capset plans capset(2) of the three sets; the kernel then drops from
// the ambient set what is no longer permitted and inheritable.
func (s *restorer) capset(what string, eff, prm, inh uint64) {
	hdr := binary.LittleEndian.AppendUint32(nil, capVersion3)
	hdr = binary.LittleEndian.AppendUint32(hdr, 0) // this thread
	var data []byte
	for word := 0; word < capWords; word++ {
		shift := 32 * word
		data = binary.LittleEndian.AppendUint32(data, uint32(eff>>shift))
		data = binary.LittleEndian.AppendUint32(data, uint32(prm>>shift))
		data = binary.LittleEndian.AppendUint32(data, uint32(inh>>shift))
	}
	s.b.Call(what, unix.SYS_CAPSET, s.b.Bytes(hdr), s.b.Bytes(data))
	s.cur.CapEff, s.cur.CapPrm, s.cur.CapInh = eff, prm, inh
	s.cur.CapAmb &= prm & inh
}

// noNewPrivs sets no_new_privs, or warns that amber's cannot be cleared.
func (s *restorer) noNewPrivs() {
	switch {
	case s.want.NoNewPrivs && !s.cur.NoNewPrivs:
		s.b.Call("set no_new_privs", unix.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
		s.cur.NoNewPrivs = true
	case !s.want.NoNewPrivs && s.cur.NoNewPrivs:
		s.warnings = append(s.warnings, "no_new_privs stays set: amber has it and it cannot be cleared")
	}
}

// Compare names the first difference between the credentials a thread
// was planned to have and those it has (from /proc, whose status does not
// show securebits).
func Compare(want, got Creds) error {
	fields := []struct {
		name      string
		want, got string
	}{
		{"Uid", fmt.Sprint(want.Uid), fmt.Sprint(got.Uid)},
		{"Gid", fmt.Sprint(want.Gid), fmt.Sprint(got.Gid)},
		{"Groups", fmt.Sprint(want.Groups), fmt.Sprint(got.Groups)},
		{"CapInh", capHex(want.CapInh), capHex(got.CapInh)},
		{"CapPrm", capHex(want.CapPrm), capHex(got.CapPrm)},
		{"CapEff", capHex(want.CapEff), capHex(got.CapEff)},
		{"CapBnd", capHex(want.CapBnd), capHex(got.CapBnd)},
		{"CapAmb", capHex(want.CapAmb), capHex(got.CapAmb)},
		{"NoNewPrivs", fmt.Sprint(want.NoNewPrivs), fmt.Sprint(got.NoNewPrivs)},
	}
	for _, f := range fields {
		if f.want != f.got {
			return fmt.Errorf("%s is %s, want %s", f.name, f.got, f.want)
		}
	}
	return nil
}

// capHex formats a capability set as /proc/PID/status does.
func capHex(set uint64) string { return fmt.Sprintf("%016x", set) }
