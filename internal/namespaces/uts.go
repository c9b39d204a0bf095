package namespaces

// UTS namespaces: the host name and the NIS domain name, in
// utsns-ID.img (one UtsnsEntry).

import (
	"fmt"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/utsns"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"amber/internal/image"
)

// dumpUTS writes utsns-ID.img with the names of pid's UTS namespace.
func dumpUTS(dir image.Dir, id uint32, pid int) error {
	var u unix.Utsname
	err := InNamespace(pid, UTS, func() error { return unix.Uname(&u) })
	if err != nil {
		return fmt.Errorf("uts namespace of pid %d: %w", pid, err)
	}
	e := &utsns.UtsnsEntry{
		Nodename:   proto.String(unix.ByteSliceToString(u.Nodename[:])),
		Domainname: proto.String(unix.ByteSliceToString(u.Domainname[:])),
	}
	return image.WriteFile(dir.UtsnsPath(id), image.Utsns, e)
}

// restoreUTS gives the UTS namespace of pid, a new one, the names of
// utsns-ID.img.
func restoreUTS(dir image.Dir, id uint32, pid int) error {
	p := dir.UtsnsPath(id)
	e, err := image.ReadOne(p, image.Utsns, func() *utsns.UtsnsEntry { return new(utsns.UtsnsEntry) })
	if err != nil {
		return err
	}
	host, domain := []byte(e.GetNodename()), []byte(e.GetDomainname())
	if len(host) > utsLen || len(domain) > utsLen {
		return fmt.Errorf("%s: nodename or domainname longer than %d bytes", p, utsLen)
	}
	return InNamespace(pid, UTS, func() error {
		if err := unix.Sethostname(host); err != nil {
			return fmt.Errorf("%s: sethostname %q: %w", p, host, err)
		}
		if err := unix.Setdomainname(domain); err != nil {
			return fmt.Errorf("%s: setdomainname %q: %w", p, domain, err)
		}
		return nil
	})
}

// utsLen is the longest name a UTS namespace holds (__NEW_UTS_LEN).
const utsLen = 64
