package cgroups

// The properties CRIU saves of each cgroup directory (its built-in
// list in cgroup-props.c), by controller, in the order they are
// written back: a memory limit before the memory+swap limit, which may
// not be below it.
var controllerProps = map[string][]string{
	"cpu": {"cpu.shares", "cpu.cfs_period_us", "cpu.cfs_quota_us", "cpu.rt_period_us", "cpu.rt_runtime_us"},
	"memory": {"memory.limit_in_bytes", "memory.memsw.limit_in_bytes", "memory.swappiness",
		"memory.soft_limit_in_bytes", "memory.move_charge_at_immigrate", "memory.oom_control",
		"memory.use_hierarchy", "memory.kmem.limit_in_bytes", "memory.kmem.tcp.limit_in_bytes"},
	"cpuset": {"cpuset.cpus", "cpuset.mems", "cpuset.memory_migrate", "cpuset.cpu_exclusive",
		"cpuset.mem_exclusive", "cpuset.mem_hardwall", "cpuset.memory_spread_page",
		"cpuset.memory_spread_slab", "cpuset.sched_load_balance", "cpuset.sched_relax_domain_level"},
	"blkio":    {"blkio.weight"},
	"net_cls":  {"net_cls.classid"},
	"net_prio": {"net_prio.ifpriomap"},
	"pids":     {"pids.max"},
	"devices":  {"devices.list"},
}

// globalProps are saved in every v1 cgroup; cgroup.procs and tasks for
// their permissions only.
var globalProps = []string{"cgroup.clone_children", "notify_on_release", "cgroup.procs", "tasks"}

// globalPropsV2 are saved in every v2 cgroup.
var globalPropsV2 = []string{"cgroup.subtree_control", "cgroup.max.descendants", "cgroup.max.depth",
	"cgroup.freeze", "cgroup.type"}

// propsOf lists the properties saved in a cgroup of hierarchy name.
func propsOf(name string) []string {
	if name == "" {
		return globalPropsV2
	}
	var out []string
	for _, c := range cnames(name) {
		out = append(out, controllerProps[c]...)
	}
	return append(out, globalProps...)
}

// permsOnly are the properties whose value is not saved, only who may
// write them.
func permsOnly(prop string) bool { return prop == "cgroup.procs" || prop == "tasks" }

// special are the properties set as soon as a cgroup is made, before
// its children are: those a v1 cpuset cgroup needs before any task can
// join it, and devices.list, whose write starts by denying all
// ("a" into devices.deny), which the kernel refuses in a cgroup with
// children (EINVAL); and cgroup.type, since threads join a threaded
// cgroup as they are made.
func special(prop string) bool {
	return prop == "cpuset.cpus" || prop == "cpuset.mems" || prop == "devices.list" || prop == "cgroup.type"
}
