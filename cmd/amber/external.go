package main

import (
	"fmt"
	"strings"

	"amber/internal/namespaces"
)

// setExternal reads --external mnt[KEY]:VAL, CRIU's external mount: on
// dump KEY is a mountpoint of the tree's mount namespace and VAL the key
// the images name it by; on restore KEY is that key and VAL the host
// path to bind there. And net[INO]:KEY, the network namespace of inode
// INO left out of the dump, which the restore joins through
// --inherit-fd fd[N]:KEY. And, on restore, veth[IFNAME]:OUTNAME[@BRIDGE]:
// the veth IFNAME of the tree's network namespace gets its outside end
// OUTNAME in amber's, put in bridge BRIDGE. Other kinds of external
// resources are not supported yet.
func setExternal(o *Options, val string, _ bool) error {
	if ext, ok, err := namespaces.ParseExtNet(val); ok {
		if err == nil && o.ExtNet.Key != "" {
			err = fmt.Errorf("--external %q: a second network namespace", val)
		}
		o.ExtNet = ext
		return err
	}
	if name, ext, ok, err := namespaces.ParseExtVeth(val); ok {
		return addExtVeth(o, name, ext, err)
	}
	rest, ok := strings.CutPrefix(val, "mnt[")
	if !ok {
		return fmt.Errorf("--external %q: %w (only mnt[KEY]:VAL, net[INODE]:KEY and veth[IFNAME]:OUTNAME[@BRIDGE] are)", val, errNotSupported)
	}
	key, v, ok := strings.Cut(rest, "]:")
	if !ok || key == "" || v == "" {
		return fmt.Errorf("--external %q: want mnt[KEY]:VAL", val)
	}
	if o.ExtMounts == nil {
		o.ExtMounts = map[string]string{}
	}
	if _, dup := o.ExtMounts[key]; dup {
		return fmt.Errorf("--external mnt[%s] given twice", key)
	}
	o.ExtMounts[key] = v
	return nil
}

// setExtMountMap reads CRIU's older spelling of an external mount,
// --ext-mount-map KEY:VAL, the same as --external mnt[KEY]:VAL. Its
// "auto" (CRIU's --external mnt[], mounts found external by themselves)
// is not supported yet.
func setExtMountMap(o *Options, val string, b bool) error {
	if val == "auto" {
		return fmt.Errorf("--ext-mount-map auto: %w (name each external mount with --external mnt[KEY]:VAL)", errNotSupported)
	}
	key, v, ok := strings.Cut(val, ":")
	if !ok || key == "" || v == "" {
		return fmt.Errorf("--ext-mount-map %q: want KEY:VAL", val)
	}
	return setExternal(o, "mnt["+key+"]:"+v, b)
}

// addExtVeth records the outside end of veth name (err from parsing it).
func addExtVeth(o *Options, name string, ext namespaces.ExtVeth, err error) error {
	if err != nil {
		return err
	}
	if o.ExtVeths == nil {
		o.ExtVeths = map[string]namespaces.ExtVeth{}
	}
	if _, dup := o.ExtVeths[name]; dup {
		return fmt.Errorf("--external veth[%s] given twice", name)
	}
	o.ExtVeths[name] = ext
	return nil
}
