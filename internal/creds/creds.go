// Package creds holds a thread's credentials: ids, groups, the five
// capability sets, securebits and no_new_privs. It converts them between
// amber's Creds, which mirror what /proc/PID/status reports, and CRIU's
// CredsEntry (go-criu's creds image), and plans the calls that give a new
// thread its dumped credentials (PlanRestore). LSM fields of the entry
// (lsm_profile, lsm_sockcreate, apparmor_data) are neither written nor
// read.
package creds

import (
	"errors"
	"fmt"
	"slices"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/creds"
	"google.golang.org/protobuf/proto"
)

// Indexes into Creds.Uid and Creds.Gid, in /proc/PID/status order.
const (
	Real = iota
	Effective
	Saved
	FS
)

// capWords is how many 32-bit words CRIU uses for one capability set
// (CR_CAP_SIZE), low word first.
const capWords = 2

// ErrMissingField is returned when an image entry lacks a field that proto2
// declares required; the wrapping error names the field.
var ErrMissingField = errors.New("required field missing")

// Creds are what /proc/PID/status says of a task's identity, plus its
// securebits.
type Creds struct {
	Uid, Gid [4]uint32 // indexed by Real, Effective, Saved, FS
	Groups   []uint32  // supplementary groups

	CapInh, CapPrm, CapEff, CapBnd, CapAmb uint64

	Secbits    uint32 // SECBIT_* as prctl(PR_GET_SECUREBITS) returns them
	NoNewPrivs bool
}

// idField pairs a 32-bit field of Creds with its field in CRIU's entry.
type idField struct {
	name string // CRIU's field name, for errors
	img  **uint32
	raw  *uint32
}

// idFields lists the required scalar fields of e next to their place in c.
func idFields(e *creds.CredsEntry, c *Creds) []idField {
	return []idField{
		{"uid", &e.Uid, &c.Uid[Real]}, {"gid", &e.Gid, &c.Gid[Real]},
		{"euid", &e.Euid, &c.Uid[Effective]}, {"egid", &e.Egid, &c.Gid[Effective]},
		{"suid", &e.Suid, &c.Uid[Saved]}, {"sgid", &e.Sgid, &c.Gid[Saved]},
		{"fsuid", &e.Fsuid, &c.Uid[FS]}, {"fsgid", &e.Fsgid, &c.Gid[FS]},
		{"secbits", &e.Secbits, &c.Secbits},
	}
}

// capField pairs a capability set of Creds with its field in CRIU's entry.
type capField struct {
	name     string // CRIU's field name, for errors
	img      *[]uint32
	raw      *uint64
	optional bool // absent in images older than ambient capabilities
}

// capFields lists the capability sets of e next to their place in c.
func capFields(e *creds.CredsEntry, c *Creds) []capField {
	return []capField{
		{"cap_inh", &e.CapInh, &c.CapInh, false},
		{"cap_prm", &e.CapPrm, &c.CapPrm, false},
		{"cap_eff", &e.CapEff, &c.CapEff, false},
		{"cap_bnd", &e.CapBnd, &c.CapBnd, false},
		{"cap_amb", &e.CapAmb, &c.CapAmb, true},
	}
}

// ToImage converts c into CRIU's entry.
func ToImage(c Creds) *creds.CredsEntry {
	e := &creds.CredsEntry{Groups: slices.Clone(c.Groups)}
	for _, f := range idFields(e, &c) {
		*f.img = proto.Uint32(*f.raw)
	}
	for _, f := range capFields(e, &c) {
		*f.img = []uint32{uint32(*f.raw), uint32(*f.raw >> 32)}
	}
	e.NoNewPrivs = proto.Uint32(boolToUint32(c.NoNewPrivs))
	return e
}

// FromImage converts CRIU's entry back into Creds. It fails if a required
// field is missing or a capability set is not two words long; an absent
// cap_amb or no_new_privs, as older images have, reads as zero.
func FromImage(e *creds.CredsEntry) (Creds, error) {
	var c Creds
	if e == nil {
		return c, fmt.Errorf("creds: %w", ErrMissingField)
	}
	for _, f := range idFields(e, &c) {
		if *f.img == nil {
			return Creds{}, fmt.Errorf("creds %s: %w", f.name, ErrMissingField)
		}
		*f.raw = **f.img
	}
	for _, f := range capFields(e, &c) {
		if err := f.fromImage(); err != nil {
			return Creds{}, err
		}
	}
	c.Groups = slices.Clone(e.Groups)
	c.NoNewPrivs = e.GetNoNewPrivs() != 0
	return c, nil
}

// fromImage joins the set's two words into its uint64.
func (f capField) fromImage() error {
	words := *f.img
	if len(words) == 0 && f.optional {
		return nil
	}
	// More words would be capabilities above 63, which no kernel has yet
	// and amber could not set; dropping them silently would lose privilege.
	if len(words) != capWords {
		return fmt.Errorf("creds %s: %d words, want %d", f.name, len(words), capWords)
	}
	*f.raw = uint64(words[0]) | uint64(words[1])<<32
	return nil
}

func boolToUint32(b bool) uint32 {
	if b {
		return 1
	}
	return 0
}
