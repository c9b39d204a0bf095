package main

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"amber/internal/cgroups"
	"amber/internal/files"
	"amber/internal/namespaces"
	"amber/internal/netfilter"
)

// opts returns the defaults with changes applied.
func opts(change func(*Options)) Options {
	o := Options{ImagesDir: ".", Verbosity: defaultVerbosity}
	change(&o)
	return o
}

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		args string
		want Options
	}{
		{"zdtm dump", "dump --no-default-config --log-file dump.log --images-dir /d --verbosity=4 --tree 123 --pidfile F --timeout 10 --pre-dump-mode splice",
			opts(func(o *Options) {
				o.Verb, o.LogFile, o.ImagesDir, o.Verbosity, o.Tree = "dump", "dump.log", "/d", 4, 123
				o.PidFile, o.Timeout, o.PreDumpMode = "F", 10, "splice"
			})},
		{"zdtm restore", "restore --no-default-config --log-file restore.log --images-dir /d --verbosity=4 --pidfile F --restore-detached",
			opts(func(o *Options) {
				o.Verb, o.LogFile, o.ImagesDir, o.Verbosity, o.PidFile, o.Detach = "restore", "restore.log", "/d", 4, "F", true
			})},
		{"zdtm check", "check --no-default-config --no-default-config -verbosity=0 --feature userns",
			opts(func(o *Options) { o.Verb, o.Verbosity, o.Feature = "check", 0, "userns" })},
		{"short forms", "dump -t 42 -D dir -o log -R -j",
			opts(func(o *Options) {
				o.Verb, o.Tree, o.ImagesDir, o.LogFile, o.LeaveRunning, o.ShellJob = "dump", 42, "dir", "log", true, true
			})},
		{"attached short values", "dump -t42 -Ddir -olog",
			opts(func(o *Options) { o.Verb, o.Tree, o.ImagesDir, o.LogFile = "dump", 42, "dir", "log" })},
		{"mounts", "restore --root /r --external mnt[k]:/a/b --external mnt[/dev/null]:null",
			opts(func(o *Options) {
				o.Verb, o.Root, o.ExtMounts = "restore", "/r", map[string]string{"k": "/a/b", "/dev/null": "null"}
			})},
		{"ext-mount-map", "restore --root /r --ext-mount-map k:/a/b -M /dev/null:null",
			opts(func(o *Options) {
				o.Verb, o.Root, o.ExtMounts = "restore", "/r", map[string]string{"k": "/a/b", "/dev/null": "null"}
			})},
		{"inherit-fd", "restore --inherit-fd fd[3]:pipe:[123] --inherit-fd=fd[0]:tmp/log",
			opts(func(o *Options) {
				o.Verb, o.InheritFds = "restore", []files.InheritFd{{Key: "pipe:[123]", Fd: 3}, {Key: "tmp/log", Fd: 0}}
			})},
		{"external net", "dump -t 1 --external net[4026532173]:extRootNetNS",
			opts(func(o *Options) {
				o.Verb, o.Tree, o.ExtNet = "dump", 1, namespaces.ExtNet{Ino: 4026532173, Key: "extRootNetNS"}
			})},
		{"external veth", "restore --external veth[eth0]:vh0@br0 --external veth[eth1]:vh1",
			opts(func(o *Options) {
				o.Verb, o.ExtVeths = "restore", map[string]namespaces.ExtVeth{"eth0": {Name: "vh0", Bridge: "br0"}, "eth1": {Name: "vh1"}}
			})},
		{"cluster", "-jRt 7 dump",
			opts(func(o *Options) { o.Verb, o.ShellJob, o.LeaveRunning, o.Tree = "dump", true, true, 7 })},
		{"options before verb", "-D dir -o x.log --tree=9 dump",
			opts(func(o *Options) { o.Verb, o.ImagesDir, o.LogFile, o.Tree = "dump", "dir", "x.log", 9 })},
		{"equals forms", "restore --images-dir=dir --log-file=r.log --pidfile=/p -d",
			opts(func(o *Options) {
				o.Verb, o.ImagesDir, o.LogFile, o.PidFile, o.Detach = "restore", "dir", "r.log", "/p", true
			})},
		{"-v raises", "check -v", opts(func(o *Options) { o.Verb, o.Verbosity = "check", 3 })},
		{"-v -v", "check -v -v", opts(func(o *Options) { o.Verb, o.Verbosity = "check", 4 })},
		{"-vvv", "check -vvv", opts(func(o *Options) { o.Verb, o.Verbosity = "check", 5 })},
		{"-v4", "check -v4", opts(func(o *Options) { o.Verb, o.Verbosity = "check", 4 })},
		{"-v0", "check -v0", opts(func(o *Options) { o.Verb, o.Verbosity = "check", 0 })},
		{"--verbosity N", "check --verbosity 1", opts(func(o *Options) { o.Verb, o.Verbosity = "check", 1 })},
		{"--verbosity alone", "--verbosity check", opts(func(o *Options) { o.Verb, o.Verbosity = "check", 3 })},
		{"prefix", "dump --tre 5 --images=dir --leave-r",
			opts(func(o *Options) { o.Verb, o.Tree, o.ImagesDir, o.LeaveRunning = "dump", 5, "dir", true })},
		{"no- forms", "restore -d --no-restore-detached --tcp-established --shell-job --no-shell-job",
			opts(func(o *Options) { o.Verb, o.TCPEstablished = "restore", true })},
		{"ext-unix-sk", "dump -t 1 -x", opts(func(o *Options) { o.Verb, o.Tree, o.ExtUnixSk = "dump", 1, true })},
		{"ext-unix-sk long", "restore --ext-unix-sk", opts(func(o *Options) { o.Verb, o.ExtUnixSk = "restore", true })},
		{"daemon", "restore --daemon", opts(func(o *Options) { o.Verb, o.Detach = "restore", true })},
		{"work dir", "restore -W /w", opts(func(o *Options) { o.Verb, o.WorkDir = "restore", "/w" })},
		{"show", "show dir", opts(func(o *Options) { o.Verb, o.Args = "show", []string{"dir"} })},
		{"double dash", "show -- -odd", opts(func(o *Options) { o.Verb, o.Args = "show", []string{"-odd"} })},
		{"version", "--version", opts(func(o *Options) { o.Version = true })},
		{"-V", "-V", opts(func(o *Options) { o.Version = true })},
		{"help", "-h", opts(func(o *Options) { o.Help = true })},
		{"no-track-mem", "dump -t 1 --no-track-mem", opts(func(o *Options) { o.Verb, o.Tree = "dump", 1 })},
		{"pre-dump", "pre-dump -t 1 -D d2 --prev-images-dir ../d1 --track-mem", opts(func(o *Options) {
			o.Verb, o.Tree, o.ImagesDir, o.PrevImagesDir, o.TrackMem = "pre-dump", 1, "d2", "../d1", true
		})},
		{"check extras", "check --all --extra --experimental", opts(func(o *Options) { o.Verb = "check" })},
		{"ghost fiemap", "dump -t 1 --ghost-fiemap --no-ghost-fiemap", opts(func(o *Options) { o.Verb, o.Tree = "dump", 1 })},
		{"irmap", "dump -t 1 --force-irmap --irmap-scan-path /etc", opts(func(o *Options) { o.Verb, o.Tree = "dump", 1 })},
		{"mntns-compat-mode", "restore --mntns-compat-mode -D d", opts(func(o *Options) { o.Verb, o.ImagesDir = "restore", "d" })},
		{"no-mntns-compat-mode", "restore --no-mntns-compat-mode -D d", opts(func(o *Options) { o.Verb, o.ImagesDir = "restore", "d" })},
		{"pre-dump-mode read", "dump -t 1 --pre-dump-mode=read", opts(func(o *Options) { o.Verb, o.Tree, o.PreDumpMode = "dump", 1, "read" })},
		{"dump to page server", "dump -t 1 --page-server --address 10.0.0.1 --port 1234", opts(func(o *Options) {
			o.Verb, o.Tree, o.PageServer, o.Address, o.Port = "dump", 1, true, "10.0.0.1", 1234
		})},
		{"lazy dump to page server", "dump -t 1 --lazy-pages --page-server --address 127.0.0.1 --port 1234", opts(func(o *Options) {
			o.Verb, o.Tree, o.LazyPages, o.PageServer, o.Address, o.Port = "dump", 1, true, true, "127.0.0.1", 1234
		})},
		{"page-server", "page-server -D d --port 27 --status-fd 5 --prev-images-dir ../p", opts(func(o *Options) {
			o.Verb, o.ImagesDir, o.Port, o.StatusFd, o.PrevImagesDir = "page-server", "d", 27, 5, "../p"
		})},
		{"page-server on a connection", "page-server -D d --ps-socket 4", opts(func(o *Options) {
			o.Verb, o.ImagesDir, o.PsSocket = "page-server", "d", 4
		})},
		{"pre-dump to a page server's connection", "pre-dump -t 1 --page-server --ps-socket 4", opts(func(o *Options) {
			o.Verb, o.Tree, o.PageServer, o.PsSocket = "pre-dump", 1, true, 4
		})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(strings.Fields(tt.args))
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.args, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Parse(%q)\n got %+v\nwant %+v", tt.args, got, tt.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		args string
		want string // in the message
	}{
		{"", "no command"},
		{"frobnicate", `unknown command "frobnicate"`},
		{"pre-dump", "pre-dump: -t/--tree PID is required"},
		{"dump -t 1 --lazy-pages", "dump --lazy-pages: --port is required"},
		{"pre-dump -t 1 --lazy-pages", "pre-dump --lazy-pages: not supported yet"},
		{"lazy-pages --page-server --port 1", "--page-server needs --address and --port"},
		{"dump -t 1 --page-server --port 5", "--page-server needs --address and --port"},
		{"pre-dump -t 1 --page-server --address h", "--page-server needs --address and --port"},
		{"page-server -D d", "page-server: --port is required"},
		{"page-server --port 70000", `bad port "70000"`},
		{"page-server -D d --ps-socket 4 --port 5", "--ps-socket is a connection made already"},
		{"page-server -D d --ps-socket x", `bad descriptor "x"`},
		{"dump -t 1 --ps-socket 4", "dump --ps-socket: a connection to the page server made already"},
		{"restore --ps-socket 4 --page-server", "restore --ps-socket"},
		{"page-server --port 5 -d", "page-server -d/--daemon: not supported yet"},
		{"dump", "-t/--tree PID is required"},
		{"dump -t", "requires an argument -- 't'"},
		{"dump --tree", "'--tree' requires an argument"},
		{"dump -t abc", `bad PID "abc"`},
		{"dump -t 0", `bad PID "0"`},
		{"dump -t -5", `bad PID "-5"`},
		{"dump -t 1 --leave-stopped", "--leave-stopped: not supported yet"},
		{"dump -t 1 --ext-unix-sk=42", "--ext-unix-sk=42: a list of socket inodes: not supported yet"},
		{"dump -t 1 --pre-dump-mode mmap", `bad mode "mmap"`},
		{"dump -t 1 --timeout soon", `bad timeout "soon"`},
		{"dump -t 1 --leave-running=yes", "doesn't allow an argument"},
		{"dump -t 1 --bogus", "unrecognized option '--bogus'"},
		{"dump -t 1 -q", "invalid option -- 'q'"},
		{"dump -t 1 --tcp", "ambiguous"},
		{"dump --tr 1", "possibilities: --tree --trust-images --track-mem"},
		{"restore -s", "-s (--leave-stopped): not supported yet"},
		{"restore --external unix[1]", "not supported yet"},
		{"dump -t 1 --ext-mount-map auto", "--ext-mount-map auto: not supported yet"},
		{"dump -t 1 --ext-mount-map nocolon", "want KEY:VAL"},
		{"restore --external mnt[k]", "want mnt[KEY]:VAL"},
		{"dump -t 1 --external net[x]:k", "want net[INODE]:KEY"},
		{"restore --external mnt[k]:a --external mnt[k]:b", "given twice"},
		{"restore --external veth[e]:a --external veth[e]:b", "veth[e] given twice"},
		{"restore --external veth[e]:", "want veth[IFNAME]:OUTNAME[@BRIDGE]"},
		{"restore extra", "excessive parameters"},
		{"restore --inherit-fd 3:pipe:[1]", `--inherit-fd "3:pipe:[1]": want fd[N]:KEY`},
		{"restore --inherit-fd fd[x]:pipe:[1]", `--inherit-fd "fd[x]:pipe:[1]": want fd[N]:KEY, N a descriptor number`},
		{"restore --inherit-fd fd[-1]:pipe:[1]", `--inherit-fd "fd[-1]:pipe:[1]": want fd[N]:KEY`},
		{"restore --inherit-fd fd[3]:", `--inherit-fd "fd[3]:": want fd[N]:KEY`},
		{"restore --inherit-fd fd[3]pipe", `--inherit-fd "fd[3]pipe": want fd[N]:KEY`},
		{"restore --inherit-fd debug[1]:hi", "debug[N]:TEXT: not supported yet"},
		{"dump -t 1 --inherit-fd fd[3]:pipe:[1]", "dump --inherit-fd: --inherit-fd is an option of restore only"},
		{"show", "exactly one"},
		{"show a b", "exactly one"},
		{"swrk", "want exactly one descriptor number"},
		{"swrk three", "want exactly one descriptor number"},
		{"swrk 3 4", "want exactly one descriptor number"},
		{"dump -D", "requires an argument"},
		{"dump -t 1 --log-file=", "empty argument"},
	}
	for _, tt := range tests {
		_, err := Parse(strings.Fields(tt.args))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Parse(%q) = %v, want error containing %q", tt.args, err, tt.want)
		}
	}
}

// TestParseErrorKeepsLog: a bad command line still yields -o and -D, so
// that the log file can be created and say what was wrong.
func TestParseErrorKeepsLog(t *testing.T) {
	o, err := Parse(strings.Fields("--bogus -o x.log -D dir dump"))
	if err == nil {
		t.Fatal("no error for --bogus")
	}
	if o.LogFile != "x.log" || o.ImagesDir != "dir" || o.Verb != "dump" {
		t.Errorf("partial options = %+v", o)
	}
	if !errors.Is(mustErr(Parse([]string{"--leave-stopped", "dump", "-t", "1"})), errNotSupported) {
		t.Error("--leave-stopped does not wrap errNotSupported")
	}
}

func mustErr(_ Options, err error) error { return err }

func TestPaths(t *testing.T) {
	tests := []struct {
		args         string
		log, pidfile string
	}{
		{"restore -D /img -o r.log --pidfile p", "/img/r.log", "/img/p"},
		{"restore -D /img -o /abs/r.log --pidfile /abs/p", "/abs/r.log", "/abs/p"},
		{"restore -D /img -W /work -o r.log --pidfile p", "/work/r.log", "/work/p"},
		{"restore -o r.log", "r.log", ""},
		{"restore -D /img -o -", "-", ""},
		{"restore -D /img", "", ""},
	}
	for _, tt := range tests {
		o, err := Parse(strings.Fields(tt.args))
		if err != nil {
			t.Fatalf("Parse(%q): %v", tt.args, err)
		}
		if o.LogPath() != tt.log || o.PidFilePath() != tt.pidfile {
			t.Errorf("%q: log %q pidfile %q, want %q %q", tt.args, o.LogPath(), o.PidFilePath(), tt.log, tt.pidfile)
		}
	}
}

func TestAtoi(t *testing.T) {
	for in, want := range map[string]int{
		"0": 0, "4": 4, "erbosity=0": 0, " 12x": 12, "-3": -3, "+7": 7, "": 0, "x1": 0,
	} {
		if got := atoi(in); got != want {
			t.Errorf("atoi(%q) = %d, want %d", in, got, want)
		}
	}
}

// TestOptionTable: no name or short letter is listed twice.
func TestOptionTable(t *testing.T) {
	longs, shorts := map[string]bool{}, map[byte]bool{}
	for _, o := range optionTable() {
		if longs[o.long] {
			t.Errorf("--%s listed twice", o.long)
		}
		longs[o.long] = true
		if o.short != 0 && shorts[o.short] {
			t.Errorf("-%c listed twice", o.short)
		}
		shorts[o.short] = true
	}
}

func TestParseGhostLimitAndFileCheck(t *testing.T) {
	for args, want := range map[string]int64{
		"dump -t 1 --ghost-limit 4096": 4096,
		"dump -t 1 --ghost-limit=64K":  64 << 10,
		"dump -t 1 --ghost-limit 2M":   2 << 20,
		"dump -t 1 --ghost-limit 1G":   1 << 30,
	} {
		o, err := Parse(strings.Fields(args))
		if err != nil || o.GhostLimit != want {
			t.Errorf("%s: limit %d, %v; want %d", args, o.GhostLimit, err, want)
		}
	}
	for _, bad := range []string{"0", "-1", "1T", "x", "K", ""} {
		if _, err := Parse([]string{"dump", "-t", "1", "--ghost-limit", bad}); err == nil {
			t.Errorf("--ghost-limit %q accepted", bad)
		}
	}
	if o, _ := Parse([]string{"dump", "-t", "1"}); ghostLimit(o) != 1<<20 {
		t.Errorf("default ghost limit %d, want 1 MiB as criu", ghostLimit(o))
	}
	if o, err := Parse([]string{"restore", "--skip-file-check"}); err != nil || !o.SkipFileCheck {
		t.Errorf("--skip-file-check: %v %v", o.SkipFileCheck, err)
	}
}

func TestParseCgroups(t *testing.T) {
	o, err := Parse(strings.Fields("restore --manage-cgroups=full --cgroup-root /a --cgroup-root cpu:/b"))
	if err != nil || o.ManageCgroups != cgroups.Full ||
		!reflect.DeepEqual(o.CgroupRoots, []cgroups.Root{{Path: "/a"}, {Controller: "cpu", Path: "/b"}}) {
		t.Errorf("restore: %v %+v %v", o.ManageCgroups, o.CgroupRoots, err)
	}
	o, err = Parse(strings.Fields("dump -t 1 --manage-cgroups --freeze-cgroup /sys/fs/cgroup/freezer/x"))
	if err != nil || o.ManageCgroups != cgroups.Soft || o.FreezeCgroup != "/sys/fs/cgroup/freezer/x" {
		t.Errorf("dump: %v %q %v", o.ManageCgroups, o.FreezeCgroup, err)
	}
	// As CRIU's: a relative yard is in the work directory.
	o, err = Parse(strings.Fields("restore -D /img --manage-cgroups --cgroup-yard ../yard"))
	if err != nil || o.CgroupYard != "../yard" || o.CgroupYardPath() != "/yard" {
		t.Errorf("yard: %q %q %v", o.CgroupYard, o.CgroupYardPath(), err)
	}
	o, err = Parse(strings.Fields("dump -t 1 -W /w --cgroup-yard=/y"))
	if err != nil || o.CgroupYardPath() != "/y" {
		t.Errorf("absolute yard: %q %v", o.CgroupYardPath(), err)
	}
	if o, _ := Parse(strings.Fields("dump -t 1 -W /w --cgroup-yard y")); o.CgroupYardPath() != "/w/y" {
		t.Errorf("yard in -W: %q", o.CgroupYardPath())
	}
	if o, _ := Parse(strings.Fields("restore")); o.CgroupYardPath() != "" {
		t.Errorf("no yard: %q", o.CgroupYardPath())
	}
	for _, bad := range []string{"--manage-cgroups=hard", "--cgroup-root=cpu:rel", "--cgroup-yard"} {
		if _, err := Parse([]string{"restore", bad}); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

func TestParseNetworkLock(t *testing.T) {
	o, err := Parse(strings.Fields("dump -t 1"))
	if err != nil || o.NetworkLock != netfilter.IPTables || o.NetworkLockSet {
		t.Errorf("default: %v set %v, %v; want CRIU's iptables, not set", o.NetworkLock, o.NetworkLockSet, err)
	}
	for arg, want := range map[string]netfilter.Method{"iptables": netfilter.IPTables, "nftables": netfilter.NFTables, "skip": netfilter.Skip, "none": netfilter.Skip} {
		o, err := Parse([]string{"dump", "-t", "1", "--network-lock", arg})
		if err != nil || o.NetworkLock != want || !o.NetworkLockSet {
			t.Errorf("--network-lock %s: %v set %v, %v", arg, o.NetworkLock, o.NetworkLockSet, err)
		}
	}
	if _, err := Parse(strings.Fields("dump -t 1 --network-lock ebtables")); err == nil || !strings.Contains(err.Error(), `"ebtables"`) {
		t.Errorf("--network-lock ebtables: %v", err)
	}
	o, err = Parse(strings.Fields("restore --join-ns net:/var/run/netns/x"))
	if err != nil || o.JoinNet != "/var/run/netns/x" {
		t.Errorf("--join-ns net:PATH: %q, %v", o.JoinNet, err)
	}
	if o, err := Parse(strings.Fields("restore -J net:42")); err != nil || o.JoinNet != "/proc/42/ns/net" {
		t.Errorf("-J net:PID: %q, %v", o.JoinNet, err)
	}
	for _, bad := range []string{"ipc:/x", "net", "net:/x,user_extra"} {
		if _, err := Parse([]string{"restore", "--join-ns", bad}); err == nil {
			t.Errorf("--join-ns %s accepted", bad)
		}
	}
}
