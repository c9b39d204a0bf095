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
// --inherit-fd fd[N]:KEY. Other kinds of external resources are not
// supported yet.
func setExternal(o *Options, val string, _ bool) error {
	if ext, ok, err := namespaces.ParseExtNet(val); ok {
		if err == nil && o.ExtNet.Key != "" {
			err = fmt.Errorf("--external %q: a second network namespace", val)
		}
		o.ExtNet = ext
		return err
	}
	rest, ok := strings.CutPrefix(val, "mnt[")
	if !ok {
		return fmt.Errorf("--external %q: %w (only mnt[KEY]:VAL and net[INODE]:KEY are)", val, errNotSupported)
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
