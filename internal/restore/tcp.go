package restore

import "amber/internal/sockets"

// endTCPRepair brings the TCP connections of the tree, made in repair
// mode, to their dumped state, once every task is in place, so that the
// first segment any of them sends finds its peer, if the peer is in the
// tree too; they leave repair mode by the RepairEnd (nil: none).
func (r *restorer) endTCPRepair(tree *treeImages) (*sockets.RepairEnd, error) {
	var socks []sockets.TCPRepaired
	for _, p := range r.procs {
		if p.plan.fds != nil {
			// amber takes them from the task: by its PID in amber's
			// pid namespace.
			socks = append(socks, p.plan.fds.TCP.Repaired(p.threads[0].Pid, p.plan.fds.Held)...)
		}
	}
	if len(socks) == 0 {
		return nil, nil
	}
	r.opts.Log.Infof("bringing %d TCP connections to their dumped state", len(socks))
	return sockets.EndTCPRepair(socks, tree.root.files, tree.root.extra.TCPStreams)
}

// closeTCP finishes the closed TCP sockets that were (or that
// --tcp-close restores closed), before any task runs: connections that
// ended get their peer back, and each is shut down as it was.
func (r *restorer) closeTCP(tree *treeImages) error {
	var socks []sockets.TCPShut
	for _, p := range r.procs {
		if p.plan.fds != nil {
			// By its PID in amber's pid namespace too: the images'
			// is its PID in its own, in a new pid namespace.
			socks = append(socks, p.plan.fds.TCP.Closed(p.threads[0].Pid, p.plan.fds.Held)...)
		}
	}
	if len(socks) == 0 {
		return nil
	}
	r.opts.Log.Infof("shutting down %d closed TCP sockets", len(socks))
	return sockets.CloseTCP(socks, tree.root.files, tree.root.extra.TCPStreams)
}
