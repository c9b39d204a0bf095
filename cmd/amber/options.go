package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"amber/internal/cgroups"
	"amber/internal/files"
	"amber/internal/namespaces"
	"amber/internal/netfilter"
)

// defaultVerbosity is CRIU's default log level (warnings).
const defaultVerbosity = 2

// errNotSupported marks options and commands of CRIU amber does not
// implement yet.
var errNotSupported = errors.New("not supported yet")

// Options is a parsed command line, with CRIU's meanings.
type Options struct {
	Verb string   // dump, restore, check, show, bench, check-images, swrk
	Args []string // operands after the verb (show's DIR|FILE, swrk's FD)

	Tree      int    // -t, --tree: root PID to dump
	ImagesDir string // -D, --images-dir (default ".")
	WorkDir   string // -W, --work-dir: where relative -o and --pidfile go (default ImagesDir)
	LogFile   string // -o, --log-file ("" logs to stderr, "-" to stdout)
	Verbosity int    // -v, --verbosity: 0 quiet .. 4 debug (default 2)
	PidFile   string // --pidfile: restore writes the root PID there
	Feature   string // check --feature

	LeaveRunning   bool // -R, --leave-running
	ShellJob       bool // -j, --shell-job
	Detach         bool // -d, --restore-detached
	TCPEstablished bool // --tcp-established
	TCPClose       bool // --tcp-close
	// TCPSkipInFlight is --tcp-skip-in-flight (or --skip-in-flight):
	// connections waiting to be accepted are left out of the dump.
	TCPSkipInFlight bool
	FileLocks       bool // -l, --file-locks
	LinkRemap       bool // --link-remap
	ExtUnixSk       bool // -x, --ext-unix-sk (without a list of inodes)
	SkipFileCheck   bool // --skip-file-check: restore files changed since the dump (amber's)
	TrustImages     bool // --trust-images: restore images others can write (amber's)

	Root      string            // -r, --root: root of the tree's mount namespace
	ExtMounts map[string]string // --external mnt[KEY]:VAL (dump: mountpoint to key; restore: key to path)
	ExtNet    namespaces.ExtNet // --external net[INO]:KEY (dump)
	// ExtVeths are --external veth[IFNAME]:OUTNAME[@BRIDGE] (restore).
	ExtVeths map[string]namespaces.ExtVeth
	// InheritFds are --inherit-fd fd[N]:KEY, repeatable: restore gives
	// the tasks amber's descriptor N in place of file KEY.
	InheritFds []files.InheritFd

	GhostLimit int64 // --ghost-limit: largest unlinked file dump keeps, bytes (0: the default, 1 MiB)

	PrevImagesDir string // --prev-images-dir: the images of the dump before (relative to ImagesDir)
	TrackMem      bool   // --track-mem: track written pages for the next dump

	Timeout     int    // --timeout, seconds (0: the default, 10)
	PreDumpMode string // --pre-dump-mode: splice or read

	PageServer bool   // --page-server: dump sends the pages to the page server at Address:Port
	Address    string // --address: the page server's address (page-server: where it listens)
	Port       int    // --port: the page server's TCP port (0: not given)
	StatusFd   int    // --status-fd: page-server writes a zero byte there once it listens (0: none)
	PsSocket   int    // --ps-socket: a connection made already, which page-server serves and a dump's pages go to (0: none)
	LazyPages  bool   // --lazy-pages: restore leaves private anonymous memory to the lazy-pages daemon

	To            string         // migrate --to HOST:PORT: the destination's amber receive
	MaxIters      int            // migrate --max-iters: most pre-dumps
	HasIters      bool           // --max-iters was given (0 is a plain dump)
	Lazy          bool           // migrate --lazy: the destination resumes first, private anonymous memory follows
	KeepImages    bool           // receive --keep-images: keep the images after the restore
	TwoHosts      bool           // migrate --two-hosts: hand over as between two hosts (tests)
	ManageCgroups cgroups.Mode   // --manage-cgroups [MODE]: soft (the default), full, strict, ignore, none, props
	CgroupRoots   []cgroups.Root // --cgroup-root [CONTROLLER:]/PATH, repeatable
	FreezeCgroup  string         // --freeze-cgroup: freezer cgroup that holds the tree to dump
	CgroupYard    string         // --cgroup-yard: the caller's mounts of the hierarchies (relative: in the work directory)
	EmptyNet      bool           // --empty-ns net: the network namespace is the container engine's
	// NetworkLock is --network-lock (dump; iptables, CRIU's default, if
	// not given) and NetworkLockSet whether it was given.
	NetworkLock    netfilter.Method
	NetworkLockSet bool
	// JoinNet is --join-ns net:PATH|PID (restore): the network namespace
	// the restored tree joins instead of a new one ("" for none).
	JoinNet string

	Rounds int    // bench --rounds: rounds per workload (0: default)
	Plot   string // bench --plot: SVG of restore time against memory size
	Size   int    // bench --size: MiB of the migration workloads (0: default)

	Help    bool // -h, --help
	Version bool // -V, --version
}

// argKind says whether an option takes an argument, as getopt_long does.
type argKind int

const (
	noArg argKind = iota
	requiredArg
	optionalArg
)

// option describes one option; set applies it (val is "" without one).
type option struct {
	long  string
	short byte // 0: long only
	arg   argKind
	set   func(o *Options, val string, hasVal bool) error
}

// verbs lists the commands and whether amber implements them.
func verbs() map[string]bool {
	return map[string]bool{
		"dump": true, "restore": true, "check": true, "show": true, "bench": true, "check-images": true,
		"pre-dump": true, "page-server": true, "lazy-pages": true,
		"dedup": false, "cpuinfo": false, "service": false, "swrk": true,
		"exec": false, "image-streamer": false, "migrate": true, "receive": true,
	}
}

// Parse parses a command line (without the program name). Options may come
// before or after the verb, in GNU forms: --opt val, --opt=val, unique
// prefixes of long names, -o val, -oval and clusters like -jR. On error
// the returned Options hold what was parsed so far, so that the log file
// can still be opened.
func Parse(args []string) (Options, error) {
	o := Options{ImagesDir: ".", Verbosity: defaultVerbosity}
	p := parser{opts: &o, table: optionTable()}
	operands, err := p.parse(args)
	if len(operands) > 0 {
		o.Verb = operands[0]
	}
	if len(operands) > 1 {
		o.Args = operands[1:]
	}
	if err != nil {
		return o, err
	}
	return o, o.validate()
}

// LogPath is where the log goes: "" for stderr, "-" for stdout, else a
// path, relative ones taken from the work directory like CRIU's.
func (o Options) LogPath() string {
	if o.LogFile == "" || o.LogFile == "-" {
		return o.LogFile
	}
	return o.inWorkDir(o.LogFile)
}

// PidFilePath is the --pidfile path, relative ones taken from the work
// directory like CRIU's ("" without --pidfile).
func (o Options) PidFilePath() string {
	if o.PidFile == "" {
		return ""
	}
	return o.inWorkDir(o.PidFile)
}

// CgroupYardPath is the --cgroup-yard directory, a relative one taken
// from the work directory, where CRIU runs ("" without --cgroup-yard).
func (o Options) CgroupYardPath() string {
	if o.CgroupYard == "" {
		return ""
	}
	return o.inWorkDir(o.CgroupYard)
}

func (o Options) inWorkDir(path string) string {
	if filepath.IsAbs(path) {
		return path
	}
	dir := o.WorkDir
	if dir == "" {
		dir = o.ImagesDir
	}
	return filepath.Join(dir, path)
}

// validate checks the verb and what it needs.
func (o Options) validate() error {
	if o.Help || o.Version {
		return nil
	}
	if o.Verb == "" {
		return errors.New("no command given (dump, restore, check, show); see amber --help")
	}
	implemented, known := verbs()[o.Verb]
	switch {
	case !known:
		return fmt.Errorf("unknown command %q; see amber --help", o.Verb)
	case !implemented:
		return fmt.Errorf("command %s: %w", o.Verb, errNotSupported)
	case o.Verb == "show":
		if len(o.Args) != 1 {
			return errors.New("show: want exactly one DIR or FILE")
		}
		return nil
	case o.Verb == "bench":
		return nil
	case o.Verb == "swrk":
		if len(o.Args) != 1 || !isDigits(o.Args[0]) {
			return errors.New("swrk: want exactly one descriptor number, the RPC socket")
		}
		return nil
	case len(o.Args) > 0:
		return fmt.Errorf("%s: excessive parameters %q", o.Verb, o.Args)
	case (o.Verb == "dump" || o.Verb == "pre-dump") && o.Tree == 0:
		return fmt.Errorf("%s: -t/--tree PID is required", o.Verb)
	case o.PageServer && o.PsSocket == 0 && (o.Address == "" || o.Port == 0):
		return fmt.Errorf("%s: --page-server needs --address and --port (or --ps-socket)", o.Verb)
	case o.Verb == "page-server":
		return o.validatePageServer()
	case o.PsSocket != 0 && (!o.PageServer || (o.Verb != "dump" && o.Verb != "pre-dump")):
		return fmt.Errorf("%s --ps-socket: a connection to the page server made already: an option of page-server, and of dump and pre-dump with --page-server", o.Verb)
	case o.Verb == "migrate" || o.Verb == "receive":
		return o.validateMigrate()
	case len(o.InheritFds) > 0 && o.Verb != "restore":
		return fmt.Errorf("%s --inherit-fd: --inherit-fd is an option of restore only", o.Verb)
	case o.LazyPages && o.Verb == "dump" && o.Port == 0:
		return errors.New("dump --lazy-pages: --port is required (where the lazy pages are served)")
	case o.LazyPages && o.Verb != "restore" && o.Verb != "dump":
		return fmt.Errorf("%s --lazy-pages: %w", o.Verb, errNotSupported)
	}
	return nil
}

// validatePageServer checks the options of the page-server command.
func (o Options) validatePageServer() error {
	switch {
	case o.Port == 0 && o.PsSocket == 0:
		return errors.New("page-server: --port is required (or --ps-socket)")
	case o.Port != 0 && o.PsSocket != 0:
		return errors.New("page-server: --ps-socket is a connection made already: no --port to listen on with it")
	case o.Detach:
		return fmt.Errorf("page-server -d/--daemon: %w", errNotSupported)
	case o.PageServer:
		return errors.New("page-server: --page-server is for dump and pre-dump")
	}
	return nil
}

// parser walks the arguments, applying options and collecting operands.
type parser struct {
	opts  *Options
	table []option
}

// parse applies every option and returns the operands. After a bad option
// it goes on, so that a later -o or -D still counts, and returns the first
// error.
func (p *parser) parse(args []string) (operands []string, first error) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		var err error
		switch {
		case a == "--":
			return append(operands, args[i+1:]...), first
		case strings.HasPrefix(a, "--"):
			i, err = p.long(args, i)
		case len(a) > 1 && a[0] == '-':
			i, err = p.short(args, i)
		default:
			operands = append(operands, a)
		}
		if first == nil {
			first = err
		}
	}
	return operands, first
}

// long handles args[i], a --name or --name=value option, and returns the
// index of the last argument it consumed.
func (p *parser) long(args []string, i int) (int, error) {
	name, val, hasVal := strings.Cut(args[i][2:], "=")
	opt, err := p.lookupLong(name)
	if err != nil {
		return i, err
	}
	switch {
	case opt.arg == noArg && hasVal:
		return i, fmt.Errorf("option '--%s' doesn't allow an argument", opt.long)
	case opt.arg == requiredArg && !hasVal:
		if i+1 >= len(args) {
			return i, fmt.Errorf("option '--%s' requires an argument", opt.long)
		}
		i++
		val, hasVal = args[i], true
	case opt.arg == optionalArg && !hasVal && i+1 < len(args) && isDigits(args[i+1]):
		// getopt would leave "--verbosity 4"'s 4 as an operand (and
		// CRIU then fails); amber takes it.
		i++
		val, hasVal = args[i], true
	}
	return i, p.apply(opt, "--"+opt.long, val, hasVal)
}

// short handles args[i], a cluster of short options like -jR, -t123 or
// -v4, and returns the index of the last argument it consumed.
func (p *parser) short(args []string, i int) (int, error) {
	cluster := args[i][1:]
	for j := 0; j < len(cluster); j++ {
		opt, err := p.lookupShort(cluster[j])
		if err != nil {
			return i, err
		}
		name, rest := fmt.Sprintf("-%c (--%s)", cluster[j], opt.long), cluster[j+1:]
		switch opt.arg {
		case noArg:
			if err := p.apply(opt, name, "", false); err != nil {
				return i, err
			}
			continue
		case optionalArg:
			// As getopt: only an attached value, so -verbosity=0 is
			// -v with "erbosity=0".
			return i, p.apply(opt, name, rest, rest != "")
		}
		if rest == "" {
			if i+1 >= len(args) {
				return i, fmt.Errorf("option requires an argument -- '%c'", cluster[j])
			}
			i++
			rest = args[i]
		}
		return i, p.apply(opt, name, rest, true)
	}
	return i, nil
}

func (p *parser) apply(opt *option, name, val string, hasVal bool) error {
	if err := opt.set(p.opts, val, hasVal); err != nil {
		return fmt.Errorf("option %s: %w", name, err)
	}
	return nil
}

// lookupLong finds a long option by its name or, like getopt_long, by a
// prefix that only one name has.
func (p *parser) lookupLong(name string) (*option, error) {
	var matches []*option
	for i := range p.table {
		opt := &p.table[i]
		if opt.long == name {
			return opt, nil
		}
		if name != "" && strings.HasPrefix(opt.long, name) {
			matches = append(matches, opt)
		}
	}
	switch len(matches) {
	case 0:
		return nil, fmt.Errorf("unrecognized option '--%s'", name)
	case 1:
		return matches[0], nil
	}
	names := make([]string, len(matches))
	for i, m := range matches {
		names[i] = "--" + m.long
	}
	return nil, fmt.Errorf("option '--%s' is ambiguous; possibilities: %s", name, strings.Join(names, " "))
}

func (p *parser) lookupShort(c byte) (*option, error) {
	for i := range p.table {
		if p.table[i].short == c {
			return &p.table[i], nil
		}
	}
	return nil, fmt.Errorf("invalid option -- '%c'", c)
}

// optionTable lists every option: amber's, then the rest of CRIU's, which
// are rejected as not supported yet (listing them keeps prefix matching
// as unambiguous as CRIU's).
func optionTable() []option {
	t := []option{
		{"tree", 't', requiredArg, setTree},
		{"images-dir", 'D', requiredArg, setString(func(o *Options) *string { return &o.ImagesDir })},
		{"work-dir", 'W', requiredArg, setString(func(o *Options) *string { return &o.WorkDir })},
		{"log-file", 'o', requiredArg, setString(func(o *Options) *string { return &o.LogFile })},
		{"pidfile", 0, requiredArg, setString(func(o *Options) *string { return &o.PidFile })},
		{"feature", 0, requiredArg, setString(func(o *Options) *string { return &o.Feature })},
		{"verbosity", 'v', optionalArg, setVerbosity},
		{"timeout", 0, requiredArg, setTimeout},
		{"rounds", 0, requiredArg, setRounds},
		{"plot", 0, requiredArg, setString(func(o *Options) *string { return &o.Plot })},
		{"size", 0, requiredArg, setSize},
		{"pre-dump-mode", 0, requiredArg, setPreDumpMode},
		{"manage-cgroups", 0, optionalArg, setManageCgroups},
		{"cgroup-root", 0, requiredArg, setCgroupRoot},
		{"freeze-cgroup", 0, requiredArg, setString(func(o *Options) *string { return &o.FreezeCgroup })},
		{"cgroup-yard", 0, requiredArg, setString(func(o *Options) *string { return &o.CgroupYard })},
		{"empty-ns", 0, requiredArg, setEmptyNs},
		{"network-lock", 0, requiredArg, setNetworkLock},
		{"join-ns", 'J', requiredArg, setJoinNs},
		{"ghost-limit", 0, requiredArg, setGhostLimit},
		{"skip-file-check", 0, noArg, setFlag(func(o *Options) *bool { return &o.SkipFileCheck }, true)},
		{"trust-images", 0, noArg, setFlag(func(o *Options) *bool { return &o.TrustImages }, true)},
		{"leave-running", 'R', noArg, setFlag(func(o *Options) *bool { return &o.LeaveRunning }, true)},
		{"help", 'h', noArg, setFlag(func(o *Options) *bool { return &o.Help }, true)},
		{"version", 'V', noArg, setFlag(func(o *Options) *bool { return &o.Version }, true)},
		{"no-default-config", 0, noArg, ignore},
		{"all", 0, noArg, ignore},
		{"prev-images-dir", 0, requiredArg, setString(func(o *Options) *string { return &o.PrevImagesDir })},
		{"track-mem", 0, noArg, setFlag(func(o *Options) *bool { return &o.TrackMem }, true)},
		{"no-track-mem", 0, noArg, setFlag(func(o *Options) *bool { return &o.TrackMem }, false)},
		{"page-server", 0, noArg, setFlag(func(o *Options) *bool { return &o.PageServer }, true)},
		{"address", 0, requiredArg, setString(func(o *Options) *string { return &o.Address })},
		{"port", 0, requiredArg, setPort},
		{"lazy-pages", 0, noArg, setFlag(func(o *Options) *bool { return &o.LazyPages }, true)},
		{"status-fd", 0, requiredArg, setFd(func(o *Options) *int { return &o.StatusFd })},
		{"ps-socket", 0, requiredArg, setFd(func(o *Options) *int { return &o.PsSocket })},
		{"to", 0, requiredArg, setString(func(o *Options) *string { return &o.To })},
		{"max-iters", 0, requiredArg, setMaxIters},
		{"lazy", 0, noArg, setFlag(func(o *Options) *bool { return &o.Lazy }, true)},
		{"keep-images", 0, noArg, setFlag(func(o *Options) *bool { return &o.KeepImages }, true)},
		{"two-hosts", 0, noArg, setFlag(func(o *Options) *bool { return &o.TwoHosts }, true)},
		{"root", 'r', requiredArg, setString(func(o *Options) *string { return &o.Root })},
		{"external", 0, requiredArg, setExternal},
		{"ext-mount-map", 'M', requiredArg, setExtMountMap},
		{"ext-unix-sk", 'x', optionalArg, setExtUnixSk},
		{"inherit-fd", 0, requiredArg, setInheritFd},
		{"extra", 0, noArg, ignore},
		{"no-extra", 0, noArg, ignore},
		{"experimental", 0, noArg, ignore},
		{"no-experimental", 0, noArg, ignore},
		// How CRIU finds a ghost file's holes (FIEMAP or SEEK_DATA):
		// amber uses SEEK_DATA and SEEK_HOLE either way, same image.
		{"ghost-fiemap", 0, noArg, ignore},
		{"no-ghost-fiemap", 0, noArg, ignore},
		// Where CRIU looks for the paths of inotify watches (an inode
		// map it scans): amber opens each watched inode by its file
		// handle and names it from there, whatever these say.
		{"force-irmap", 0, noArg, ignore},
		{"irmap-scan-path", 0, requiredArg, ignore},
		// Which of its two mount engines CRIU restores a mount namespace
		// with (the older one, without MOVE_MOUNT_SET_GROUP): both make
		// the same mounts, and amber has one way of making them.
		{"mntns-compat-mode", 0, noArg, ignore},
		{"no-mntns-compat-mode", 0, noArg, ignore},
	}
	t = append(t, boolOption("restore-detached", 'd', func(o *Options) *bool { return &o.Detach })...)
	t = append(t, boolOption("daemon", 0, func(o *Options) *bool { return &o.Detach })...)
	t = append(t, boolOption("shell-job", 'j', func(o *Options) *bool { return &o.ShellJob })...)
	t = append(t, boolOption("tcp-established", 0, func(o *Options) *bool { return &o.TCPEstablished })...)
	t = append(t, boolOption("tcp-close", 0, func(o *Options) *bool { return &o.TCPClose })...)
	t = append(t, boolOption("file-locks", 'l', func(o *Options) *bool { return &o.FileLocks })...)
	t = append(t, option{"link-remap", 0, noArg, setFlag(func(o *Options) *bool { return &o.LinkRemap }, true)})
	t = append(t, boolOption("tcp-skip-in-flight", 0, func(o *Options) *bool { return &o.TCPSkipInFlight })...)
	t = append(t, boolOption("skip-in-flight", 0, func(o *Options) *bool { return &o.TCPSkipInFlight })...)
	return append(t, unsupportedOptions()...)
}

// boolOption is CRIU's BOOL_OPT: --name sets, --no-name clears.
func boolOption(name string, short byte, field func(*Options) *bool) []option {
	return []option{
		{name, short, noArg, setFlag(field, true)},
		{"no-" + name, 0, noArg, setFlag(field, false)},
	}
}

// unsupportedOptions are CRIU's other options (criu/config.c).
func unsupportedOptions() []option {
	longs := []struct {
		name  string
		short byte
		arg   argKind
	}{
		{"leave-stopped", 's', noArg}, {"restore-sibling", 'S', noArg},
		{"libdir", 'L', requiredArg},
		{"close", 0, requiredArg}, {"log-pid", 0, noArg},
		{"evasive-devices", 0, noArg}, {"veth-pair", 0, requiredArg},
		{"action-script", 0, requiredArg},
		{"ms", 0, noArg}, {"auto-dedup", 0, noArg},
		{"cpu-cap", 0, optionalArg},
		{"exec-cmd", 0, noArg},
		{"skip-mnt", 0, requiredArg}, {"enable-fs", 0, requiredArg},
		{"enable-external-sharing", 0, noArg}, {"enable-external-masters", 0, noArg},
		{"lsm-profile", 0, requiredArg},
		{"cgroup-props", 0, requiredArg},
		{"cgroup-props-file", 0, requiredArg}, {"cgroup-dump-controller", 0, requiredArg},
		{"deprecated", 0, noArg},
		{"display-stats", 0, noArg}, {"weak-sysctls", 0, noArg},
		{"stream", 0, noArg},
		{"config", 0, requiredArg}, {"tls-cacert", 0, requiredArg},
		{"tls-cacrl", 0, requiredArg}, {"tls-cert", 0, requiredArg},
		{"tls-key", 0, requiredArg}, {"tls", 0, noArg},
		{"tls-no-cn-verify", 0, noArg},
		{"file-validation", 0, requiredArg}, {"skip-file-rwx-check", 0, noArg},
		{"lsm-mount-context", 0, requiredArg},
		{"unprivileged", 0, noArg},
		{"allow-uprobes", 0, noArg},
	}
	out := make([]option, len(longs))
	for i, l := range longs {
		out[i] = option{l.name, l.short, l.arg, reject}
	}
	return out
}

// setManageCgroups takes --manage-cgroups's mode; without one, soft.
func setManageCgroups(o *Options, val string, _ bool) error {
	m, err := cgroups.ParseMode(val)
	o.ManageCgroups = m
	return err
}

// setNetworkLock takes --network-lock's method.
func setNetworkLock(o *Options, val string, _ bool) error {
	m, err := netfilter.ParseMethod(val)
	o.NetworkLock, o.NetworkLockSet = m, err == nil
	return err
}

// setJoinNs takes --join-ns NS:PATH|PID[,EXTRA]: only net, whose tree
// joins the namespace at PATH (or PID's) instead of a new one, as
// CRIU's; the other kinds are not supported yet.
func setJoinNs(o *Options, val string, _ bool) error {
	kind, target, ok := strings.Cut(val, ":")
	if !ok || target == "" {
		return fmt.Errorf("--join-ns %q: want NS:PATH or NS:PID", val)
	}
	if kind != "net" {
		return fmt.Errorf("--join-ns %s: %w (only net)", kind, errNotSupported)
	}
	if strings.Contains(target, ",") {
		return fmt.Errorf("--join-ns %q: extra options: %w", val, errNotSupported)
	}
	if isDigits(target) {
		target = "/proc/" + target + "/ns/net"
	}
	o.JoinNet = target
	return nil
}

// setEmptyNs takes --empty-ns: as CRIU's, only net.
func setEmptyNs(o *Options, val string, _ bool) error {
	if val != "net" {
		return fmt.Errorf("--empty-ns %q: only net is allowed", val)
	}
	o.EmptyNet = true
	return nil
}

func setCgroupRoot(o *Options, val string, _ bool) error {
	r, err := cgroups.ParseRoot(val)
	if err != nil {
		return err
	}
	o.CgroupRoots = append(o.CgroupRoots, r)
	return nil
}

// setExtUnixSk takes --ext-unix-sk; CRIU's list of inodes of sockets
// without a name (--ext-unix-sk=INO,...) is not supported yet.
func setExtUnixSk(o *Options, val string, hasVal bool) error {
	if hasVal {
		return fmt.Errorf("--ext-unix-sk=%s: a list of socket inodes: %w", val, errNotSupported)
	}
	o.ExtUnixSk = true
	return nil
}

func setTree(o *Options, val string, _ bool) error {
	pid, err := strconv.Atoi(val)
	if err != nil || pid <= 0 {
		return fmt.Errorf("bad PID %q", val)
	}
	o.Tree = pid
	return nil
}

func setTimeout(o *Options, val string, _ bool) error {
	n, err := strconv.Atoi(val)
	if err != nil || n < 0 {
		return fmt.Errorf("bad timeout %q (want seconds)", val)
	}
	o.Timeout = n
	return nil
}

func setPort(o *Options, val string, _ bool) error {
	n, err := strconv.Atoi(val)
	if err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("bad port %q (want 1 to 65535)", val)
	}
	o.Port = n
	return nil
}

// setFd sets the descriptor number field returns, a positive one.
func setFd(field func(o *Options) *int) func(o *Options, val string, _ bool) error {
	return func(o *Options, val string, _ bool) error {
		n, err := strconv.Atoi(val)
		if err != nil || n < 1 {
			return fmt.Errorf("bad descriptor %q (want a positive number)", val)
		}
		*field(o) = n
		return nil
	}
}

func setRounds(o *Options, val string, _ bool) error {
	n, err := strconv.Atoi(val)
	if err != nil || n < 1 {
		return fmt.Errorf("bad rounds %q (want a positive number)", val)
	}
	o.Rounds = n
	return nil
}

// setGhostLimit takes a size as CRIU's parse_size does: a number of
// bytes, or of KiB, MiB or GiB with a K, M or G suffix. Zero is refused:
// it would stand for the default.
func setGhostLimit(o *Options, val string, _ bool) error {
	mult := int64(1)
	num := val
	for suffix, m := range map[string]int64{"K": 1 << 10, "M": 1 << 20, "G": 1 << 30} {
		if n, ok := strings.CutSuffix(val, suffix); ok {
			num, mult = n, m
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/mult {
		return fmt.Errorf("bad size %q (want a positive size such as 4096, 64K, 1M or 2G)", val)
	}
	o.GhostLimit = n * mult
	return nil
}

func setPreDumpMode(o *Options, val string, _ bool) error {
	if val != "splice" && val != "read" {
		return fmt.Errorf("bad mode %q (want splice or read)", val)
	}
	o.PreDumpMode = val
	return nil
}

// setVerbosity follows CRIU: -v raises the level by one, -vvv by three
// ("vv" is the value of the first -v), -vN and --verbosity=N set N with C's
// atoi, so that -verbosity=0 sets 0.
func setVerbosity(o *Options, val string, hasVal bool) error {
	switch {
	case !hasVal:
		o.Verbosity++
	case val[0] == 'v':
		o.Verbosity += len(val) + 1
	default:
		o.Verbosity = atoi(val)
	}
	return nil
}

func setString(field func(*Options) *string) func(*Options, string, bool) error {
	return func(o *Options, val string, _ bool) error {
		if val == "" {
			return errors.New("empty argument")
		}
		*field(o) = val
		return nil
	}
}

func setFlag(field func(*Options) *bool, v bool) func(*Options, string, bool) error {
	return func(o *Options, _ string, _ bool) error {
		*field(o) = v
		return nil
	}
}

func ignore(*Options, string, bool) error { return nil }

func reject(*Options, string, bool) error { return errNotSupported }

// atoi is C's: leading blanks, a sign, then digits up to the first
// non-digit; 0 if there are none.
func atoi(s string) int {
	s = strings.TrimLeft(s, " \t\n\v\f\r")
	sign := 1
	if s != "" && (s[0] == '-' || s[0] == '+') {
		if s[0] == '-' {
			sign = -1
		}
		s = s[1:]
	}
	n := 0
	for i := 0; i < len(s) && s[i] >= '0' && s[i] <= '9' && n < 1<<20; i++ {
		n = n*10 + int(s[i]-'0')
	}
	return sign * n
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
