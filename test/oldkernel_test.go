package test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// oldKernelsDir is where .ci/run unpacks Debian 12's kernel packages, one
// directory each, not installed: its own (linux-image-cloud-amd64's, Linux
// 6.1) and the one it offers beside (linux-image-6.12-cloud-amd64's, Linux
// 6.12, as in Debian 13). The tests boot each in qemu. AMBER_OLD_KERNEL
// names another vmlinuz, booted alone.
const oldKernelsDir = "/var/tmp/amber-kernels"

// oldKernelPrograms are dumped and restored one by one in the guest, with
// the page scan of kernels without PAGEMAP_SCAN where it has none, and
// POSIX timers restored without PR_TIMER_CREATE_RESTORE_IDS; by a static
// amber, whose entry point's bytes differ from the dynamic one's
// (proc_dead and unhashed_cwd, whose restores fork a dead process's
// helper, failed on them).
var oldKernelPrograms = []string{"counter", "heap_globals", "fork_cow", "threads_tls", "maps_runs",
	"memfd_fork", "pipe_read", "timers00", "timer_signals", "timer_thread",
	"sk_unix_pair", "sk_unix_scm", "sk_unix_ext", "sk_netlink", "sk_packet", "sock_filter",
	"tcp_established00", "tcp_buffers00", "proc_dead", "unhashed_cwd"}

// crossKernelPrograms are dumped here and restored in the guest, on
// another kernel, whose vdso is another: one process and a tree.
var crossKernelPrograms = []string{"vdso_kernels", "fork_cow"}

// oldKernelModules are the modules of the guest's kernel
// (lib/modules/VERSION/kernel/...) it loads at boot, in this order, having
// no modprobe: the sock_diag ones amber's socket dumps query, which a
// Debian host loads on demand, and the virtio network driver.
var oldKernelModules = []string{"net/unix/unix_diag", "net/netlink/netlink_diag", "net/packet/af_packet_diag",
	"net/ipv4/inet_diag", "net/ipv4/tcp_diag", "net/ipv4/udp_diag", "net/ipv4/raw_diag",
	"drivers/virtio/virtio_ring", "drivers/virtio/virtio", "drivers/virtio/virtio_pci_modern_dev",
	"drivers/virtio/virtio_pci_legacy_dev", "drivers/virtio/virtio_pci", "net/core/failover",
	"drivers/net/net_failover", "drivers/net/virtio_net"}

// oldKernelScript runs in the guest as its init's last step; every check
// prints a RESULT line on the serial console.
const oldKernelScript = `#!/bin/sh
ip link set lo up
F=--shell-job
waitfor() { # file pattern tenths
	n=0
	while ! grep -q "$2" "$1" 2>/dev/null; do
		sleep 0.1; n=$((n+1)); [ $n -ge $3 ] && return 1
	done
	return 0
}
err() { grep Error "$1" | head -1 | cut -c1-300; }
start() { # name, program: run it here until it is ready, as pid
	/progs/$2 > out 2>&1 < /dev/null &
	pid=$!
	waitfor out ready 300 || { echo "RESULT $1 not ready: $(cat out)"; return 1; }
}
restored() { # name, images, restore flags: restore the program dumped there, once its process is gone
	wait $pid
	amber restore -D $2 -d -o restore.log $F $3 || { echo "RESULT $1 restore: $(err $2/restore.log)"; return 1; }
}
checked() { # name, pid: stop the program running here, which checks itself
	kill -TERM $2
	waitfor out PASS 300 && echo "RESULT $1 PASS" || echo "RESULT $1 check: $(tail -1 out)"
}
amber check 2>&1 | sed 's/^/CHECK /'
amber check --feature mem_dirty_track >/dev/null 2>&1 && echo "RESULT mem_dirty_track PASS" || echo "RESULT mem_dirty_track refused"

cycle() { # program, dump flags, restore flags: dump, restore, check
	d=/tmp/$1; mkdir -p $d/img; cd $d
	start $1 $1 || return
	amber dump -t $pid -D img -o dump.log $F $2 || { echo "RESULT $1 dump: $(err img/dump.log)"; return; }
	restored $1 img "$3" || return
	checked $1 $pid
}

chain() { # predump_writer: two pre-dumps (a child forked between), a dump on top
	d=/tmp/chain; mkdir -p $d/pre1 $d/pre2 $d/final; cd $d
	start chain predump_writer || return
	amber pre-dump -t $pid -D pre1 -o pre.log -v4 $F || { echo "RESULT chain pre-dump: $(err pre1/pre.log)"; return; }
	touch fork.now
	sleep 1
	amber pre-dump -t $pid -D pre2 --prev-images-dir ../pre1 -o pre.log -v4 $F || { echo "RESULT chain second pre-dump: $(err pre2/pre.log)"; return; }
	sleep 1
	amber dump -t $pid -D final --prev-images-dir ../pre2 --track-mem -o dump.log -v4 $F || { echo "RESULT chain dump: $(err final/dump.log)"; return; }
	grep "pages dumped" final/dump.log | sed 's/^/PAGES /'
	restored chain final || return
	checked chain $pid
}

failed() { # a pre-dump that fails after resetting the tracking, then a dump on top of the one before
	d=/tmp/failed; mkdir -p $d/pre $d/full $d/final; cd $d
	mount -t tmpfs -o size=64k full full
	start failed predump_writer || return
	amber pre-dump -t $pid -D pre -o pre.log $F || { echo "RESULT failed pre-dump: $(err pre/pre.log)"; return; }
	amber pre-dump -t $pid -D full --prev-images-dir ../pre -o $d/full.log $F && { echo "RESULT failed a pre-dump to a full disk succeeded"; return; }
	grep -q "no space left" full.log || { echo "RESULT failed the pre-dump failed otherwise: $(err full.log)"; return; }
	amber dump -t $pid -D final --prev-images-dir ../pre --track-mem -o dump.log -v4 $F || { echo "RESULT failed dump: $(err final/dump.log)"; return; }
	grep "pages dumped" final/dump.log | sed 's/^/AFTERFAIL /'
	restored failed final || return
	checked failed $pid
}

lazy() { # predump_writer dumped, restored with amber lazy-pages filling its memory
	d=/tmp/lazy; mkdir -p $d/img; cd $d
	start lazy predump_writer || return
	amber dump -t $pid -D img -o dump.log $F || { echo "RESULT lazy dump: $(err img/dump.log)"; return; }
	wait $pid
	mkfifo status
	amber lazy-pages -D img -o lazy.log --status-fd 3 3> status &
	lp=$!
	head -c 1 status > /dev/null # ready, or gone
	amber restore -D img --lazy-pages -d -o restore.log $F || { echo "RESULT lazy restore: $(err img/restore.log)"; return; }
	wait $lp || { echo "RESULT lazy lazy-pages: $(err img/lazy.log)"; return; }
	checked lazy $pid
}

migrate() { # name, port, prefix of its output's lines, the command to start the program under, amber migrate's flags
	d=/tmp/$1; mkdir -p $d/in; cd $d
	$4 setsid /progs/predump_writer > out 2>&1 < /dev/null &
	waitfor out ready 300 || { echo "RESULT $1 not ready: $(cat out)"; return; }
	pid=$(pidof predump_writer)
	mkfifo status
	amber receive -D in --port $2 -o receive.log --status-fd 3 3> status &
	rp=$!
	head -c 1 status > /dev/null
	amber migrate -t $pid --to 127.0.0.1:$2 $5 -o $d/migrate.log > migrate.out 2>&1 || { echo "RESULT $1: $(err migrate.log)"; return; }
	sed "s/^/$3 /" migrate.out
	wait $rp || { echo "RESULT $1 receive: $(err in/receive.log)"; return; }
	checked $1 $(pidof predump_writer)
}

xkernel() { # images dumped by the host's kernel, directory, pid, program: restore, check
	amber restore -D $1/img -d -o restore.log $F || { echo "RESULT xkernel_$3 restore: $(err $1/img/restore.log)"; return; }
	grep "vdso has" $1/img/restore.log | sed 's/^/XKERNEL /'
	kill -TERM $2
	waitfor $1/$3.out PASS 300 && echo "RESULT xkernel_$3 PASS" || echo "RESULT xkernel_$3 check: $(tail -1 $1/$3.out)"
}

tohost() { # directory, pid, port: vdso_kernels, run here as pid, migrated to amber receive on the host
	ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0 || { echo "RESULT tohost no network"; return; }
	chmod 777 $1; cd $1
	echo 4194304 > /proc/sys/kernel/pid_max
	echo $(($2 - 1)) > /proc/sys/kernel/ns_last_pid
	# As a user: root here has CAP_SYS_RESOURCE, which the host's amber,
	# and so the restored process, lacks.
	su -s /bin/sh -c "exec setsid $1/vdso_kernels > vdso_kernels.out 2>&1 < /dev/null" amber &
	waitfor vdso_kernels.out ready 300 || { echo "RESULT tohost not ready: $(cat vdso_kernels.out)"; return; }
	pid=$(pidof vdso_kernels)
	[ "$pid" = $2 ] || { echo "RESULT tohost got pid $pid, not $2"; return; }
	amber migrate -t $pid --to 10.0.2.2:$3 -o $1/migrate.log > migrate.out 2>&1 || { echo "RESULT tohost migrate: $(err migrate.log)"; return; }
	sed 's/^/TOHOST /' migrate.out
	echo "RESULT tohost PASS"
}

CYCLES
TOHOST
chain
failed
lazy
migrate migrate 27100 MIGRATE
# Lazily, in a pid namespace of its own: on one host, the restore needs
# the PIDs its frozen source holds.
migrate lazymigrate 27101 LAZY "unshare --pid --fork" --lazy
XKERNEL
`

// oldKernelInit mounts what amber needs, runs the script and powers the
// guest off.
const oldKernelInit = `#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /dev/pts && mount -t devpts devpts /dev/pts
mount -t tmpfs tmp /tmp
for m in /modules/*.ko; do insmod $m; done
echo "KERNEL $(uname -r)"
/run.sh
echo GUEST-DONE
poweroff -f
`

// TestOldKernel boots the kernels Debian 12 offers, in qemu, and runs
// amber on each. Linux 6.1, its own, has no PAGEMAP_SCAN (amber's page
// scan reads /proc/PID/pagemap instead), no asynchronous userfaultfd write
// protection but soft-dirty bits (by which incremental dumps track written
// pages, as CRIU's do); Linux 6.12 (Debian 13's) has both of the first;
// neither has PR_TIMER_CREATE_RESTORE_IDS. Each program (memory, threads,
// timers, sockets) dumps, restores and passes its own check in the guest.
// predump_writer is pre-dumped twice (forking a child between), dumped
// on top and restored, and the final dump must leave its 32 MiB of
// memory written before the first pre-dump to the pre-dumps: its hot
// pages are rewritten all the time, so a dump that took a written page
// for an unwritten one would restore a stale generation, which the
// program finds. A pre-dump that fails after resetting the tracking (its
// disk is full) leaves the next dump to copy every page. The same program
// is restored lazily (amber lazy-pages) and migrated over loopback (amber
// receive, amber migrate), whose pre-dumps after the first must send only
// what it wrote since, and lazily (migrate --lazy). Across kernels, whose
// vdsos differ: vdso_kernels dumped here is restored in the guest, and
// one running in the guest is migrated here (amber migrate in the guest,
// amber receive here, over qemu's user network).
func TestOldKernel(t *testing.T) {
	requireAmber(t)
	kernels := oldKernels(t)
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		missing(t, "qemu-system-x86_64 not installed: apt-get install qemu-system-x86")
	}
	for _, kernel := range kernels {
		version := kernelVersion(kernel)
		t.Run(version, func(t *testing.T) { testOnKernel(t, qemu, kernel, version) })
	}
}

// testOnKernel boots kernel, of version, with the guest of buildGuest, and
// checks what it did.
func testOnKernel(t *testing.T, qemu, kernel, version string) {
	initrd, back, backPid, recv := buildGuest(t, kernel)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	// TCG, not KVM: KVM in these VMs runs no guest.
	cmd := exec.CommandContext(ctx, qemu, "-accel", "tcg,thread=multi", "-cpu", "max,pku=off,mpx=off", "-smp", "2", "-m", "1024",
		"-netdev", "user,id=net0", "-device", "virtio-net-pci,netdev=net0,romfile=",
		"-nographic", "-no-reboot", "-kernel", kernel, "-initrd", initrd,
		"-append", "console=ttyS0 quiet panic=-1")
	start := time.Now()
	out, err := cmd.CombinedOutput()
	console := string(out)
	t.Logf("guest ran %v", time.Since(start).Round(time.Millisecond))
	if err != nil || !strings.Contains(console, "GUEST-DONE") {
		t.Fatalf("qemu: %v; console:\n%s", err, console)
	}
	if checkOldKernelConsole(t, console, version)["tohost"] == "PASS" {
		checkFromGuest(t, recv, back, backPid)
	}
}

// oldKernels returns the vmlinuzes to boot, or skips the test (fails it
// in CI) if there is none.
func oldKernels(t *testing.T) []string {
	t.Helper()
	if k := os.Getenv("AMBER_OLD_KERNEL"); k != "" {
		return []string{k}
	}
	found, _ := filepath.Glob(filepath.Join(oldKernelsDir, "*", "boot", "vmlinuz-*"))
	if len(found) == 0 {
		missing(t, "no kernel in "+oldKernelsDir+"/*/boot: .ci/run unpacks Debian's kernel packages there")
	}
	return found
}

// kernelVersion is the version of the vmlinuz at path, from its name.
func kernelVersion(path string) string {
	return strings.TrimPrefix(filepath.Base(path), "vmlinuz-")
}

// buildGuest makes the initramfs for kernel: a static busybox, a static
// amber, the programs compiled static, the kernel's sock_diag modules,
// images dumped here for the guest to restore, the init and the script.
// It returns the initramfs, and the directory and PID of the program the
// guest dumps for this machine to restore.
func buildGuest(t *testing.T, kernel string) (initrd, back string, backPid int, recv *receiver) {
	t.Helper()
	root := filepath.Join(t.TempDir(), "root")
	for _, d := range []string{"bin", "progs", "modules", "etc", "proc", "sys", "dev", "tmp"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		missing(t, "busybox not installed: apt-get install busybox-static")
	}
	if err := copyFile(busybox, filepath.Join(root, "bin", "busybox")); err != nil {
		t.Fatal(err)
	}
	for _, app := range []string{"sh", "mount", "mkdir", "cat", "grep", "sed", "cut", "head", "tail",
		"sleep", "kill", "touch", "uname", "ip", "insmod", "pidof", "setsid", "mkfifo", "su", "chmod", "unshare", "poweroff"} {
		if err := os.Symlink("busybox", filepath.Join(root, "bin", app)); err != nil {
			t.Fatal(err)
		}
	}
	build := exec.Command("go", "build", "-o", filepath.Join(root, "bin", "amber"), "./cmd/amber")
	build.Dir, build.Env = "..", append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("static amber: %v\n%s", err, out)
	}
	// Numbered in the order of oldKernelModules, which insmod follows:
	// tcp_diag needs inet_diag, virtio_net virtio.
	version := kernelVersion(kernel)
	modules := filepath.Join(filepath.Dir(filepath.Dir(kernel)), "lib", "modules", version)
	for i, m := range oldKernelModules {
		if err := copyModule(modules, m, filepath.Join(root, "modules", fmt.Sprintf("%02d-%s.ko", i, filepath.Base(m)))); err != nil {
			t.Fatalf("the guest kernel's modules: %v", err)
		}
	}
	var progs []program
	var cycles strings.Builder
	names := append(append([]string{"predump_writer"}, oldKernelPrograms...), crossKernelPrograms...)
	slices.Sort(names)
	for _, name := range slices.Compact(names) {
		p, ok := lookupProgram(name)
		if !ok {
			t.Fatalf("no program %s", name)
		}
		p.cflags = append(slices.Clone(p.cflags), "-static")
		progs = append(progs, p)
		if slices.Contains(oldKernelPrograms, name) {
			fmt.Fprintf(&cycles, "cycle %s '%s' '%s'\n", name, strings.Join(p.dumpFlags, " "), strings.Join(p.restoreFlags, " "))
		}
	}
	for name, err := range compilePrograms("zdtm", filepath.Join(root, "progs"), progs) {
		t.Fatalf("%s: %v", name, err)
	}
	var xkernel strings.Builder
	for _, name := range crossKernelPrograms {
		dir, pid := dumpForGuest(t, root, name)
		fmt.Fprintf(&xkernel, "xkernel %s %d %s\n", dir, pid, name)
	}
	back, backPid = dirForGuest(t, root)
	recv = startHostReceive(t, back)
	script := strings.Replace(oldKernelScript, "CYCLES\n", cycles.String(), 1)
	script = strings.Replace(script, "XKERNEL\n", xkernel.String(), 1)
	script = strings.Replace(script, "TOHOST\n", fmt.Sprintf("tohost %s %d %d\n", back, backPid, recv.port), 1)
	for name, text := range map[string]string{"etc/passwd": "root:x:0:0::/:/bin/sh\namber:x:1000:1000::/:/bin/sh\n",
		"etc/group": "root:x:0:\namber:x:1000:\n"} {
		if err := os.WriteFile(filepath.Join(root, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for name, text := range map[string]string{"init": oldKernelInit, "run.sh": script} {
		if err := os.WriteFile(filepath.Join(root, name), []byte(text), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	initrd = filepath.Join(filepath.Dir(root), "initrd")
	pack := exec.Command("sh", "-c", "find . | cpio -o -H newc --quiet > "+initrd)
	pack.Dir = root
	if out, err := pack.CombinedOutput(); err != nil {
		t.Fatalf("cpio (apt-get install cpio): %v\n%s", err, out)
	}
	return initrd, back, backPid, recv
}

// crossDir makes a directory for a program that goes from one kernel to
// the other, at the same path here and in the guest (under /var/tmp: the
// guest mounts a tmpfs over /tmp), with the program name (compiled static
// into root/progs) in it.
func crossDir(t *testing.T, root, name string) string {
	t.Helper()
	dir, err := os.MkdirTemp("/var/tmp", "amber-oldkernel-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	prog := filepath.Join(dir, name)
	if err := copyFile(filepath.Join(root, "progs", name), prog); err != nil {
		t.Fatal(err)
	}
	// Whole seconds: the initramfs keeps no more of a file's time, and
	// a restore checks the file against the one dumped.
	whole := time.Now().Add(-time.Minute).Truncate(time.Second)
	if err := os.Chtimes(prog, whole, whole); err != nil {
		t.Fatal(err)
	}
	return dir
}

// dumpForGuest runs program name on this machine and dumps it, for the
// guest to restore on its own kernel, whose vdso is another: in a
// crossDir the guest gets with the program, its output and the images,
// their times kept. glibc is kept
// from the AVX-512 code it would pick on this CPU, which the guest's
// emulated one lacks. It returns the directory and the PID.
func dumpForGuest(t *testing.T, root, name string) (string, int) {
	t.Helper()
	dir := crossDir(t, root, name)
	prog := filepath.Join(dir, name)
	outPath := filepath.Join(dir, name+".out")
	out, err := os.OpenFile(outPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd := exec.Command(prog)
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, out, out
	cmd.Env = append(os.Environ(), "GLIBC_TUNABLES=glibc.cpu.hwcaps=-AVX512F,-AVX512BW,-AVX512VL,-AVX512DQ,-AVX512CD")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for start := time.Now(); ; time.Sleep(50 * time.Millisecond) {
		b, _ := os.ReadFile(outPath)
		if strings.Contains(string(b), "ready") {
			break
		}
		if time.Since(start) > readyTimeout {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("%s not ready: %s", name, b)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "img"), 0o700); err != nil {
		t.Fatal(err)
	}
	if r := runAmber(testEnv.amber, dir, program{}, "dump", "-t", strconv.Itoa(cmd.Process.Pid), "-D", filepath.Join(dir, "img"), "-o", "dump.log"); r.err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("dump on this kernel: %v\n%s", r, r.stderr)
	}
	cmd.Wait()
	if err := copyTree(dir, filepath.Join(root, dir)); err != nil {
		t.Fatal(err)
	}
	return dir, cmd.Process.Pid
}

// dirForGuest makes the crossDir in which the guest runs vdso_kernels to
// migrate it here, and a PID to run it as, free here and not given again
// before the guest is done (below the last one this machine gave, or,
// just after the numbers wrapped, near the top).
func dirForGuest(t *testing.T, root string) (string, int) {
	t.Helper()
	dir := crossDir(t, root, "vdso_kernels")
	if err := copyTree(dir, filepath.Join(root, dir)); err != nil {
		t.Fatal(err)
	}
	last, err := readInt("/proc/sys/kernel/ns_last_pid")
	if err != nil {
		t.Fatal(err)
	}
	top, err := readInt("/proc/sys/kernel/pid_max")
	if err != nil {
		t.Fatal(err)
	}
	// The kernel gives every number up to the top before it comes back.
	for _, r := range [][2]int{{last - 100, max(last-5000, 1000)}, {top - 100, max(top-5000, last+5000)}} {
		for pid := r[0]; pid > r[1]; pid-- {
			if err := syscall.Kill(pid, 0); err == syscall.ESRCH {
				return dir, pid
			}
		}
	}
	t.Fatalf("no free PID (the last given %d, the highest %d)", last, top)
	return "", 0
}

// startHostReceive starts amber receive into dir/in, on a loopback port
// the guest reaches as 10.0.2.2 (qemu's user network), for the guest's
// amber migrate, with --skip-file-check: the program's output file is the
// guest's, not this machine's (a migration between two machines with a
// shared filesystem would not need it).
func startHostReceive(t *testing.T, dir string) *receiver {
	t.Helper()
	// The output file the restored program writes on: here, as in the
	// guest, its first line.
	if err := os.WriteFile(filepath.Join(dir, "vdso_kernels.out"), []byte("ready\n"), 0o666); err != nil {
		t.Fatal(err)
	}
	in := filepath.Join(dir, "in")
	if err := os.Mkdir(in, 0o700); err != nil {
		t.Fatal(err)
	}
	return startReceiver(t, dir, in, []string{"--skip-file-check", "-o", "receive.log"}, nil)
}

// checkFromGuest waits for amber receive to end, having restored the
// program the guest migrated (pid, in dir), and checks that the program
// passes here.
func checkFromGuest(t *testing.T, r *receiver, dir string, pid int) {
	t.Helper()
	err := r.exited()
	log, _ := os.ReadFile(filepath.Join(r.dir, "receive.log"))
	for _, line := range strings.Split(string(log), "\n") {
		if strings.Contains(line, "[vdso]") || strings.Contains(line, "vdso has") {
			t.Logf("restore here: %s", line)
		}
	}
	if err != nil {
		t.Fatalf("amber receive of the guest's migration: %v\n%s", err, log)
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatalf("the migrated vdso_kernels (pid %d): %v", pid, err)
	}
	var status syscall.WaitStatus
	if _, err := syscall.Wait4(pid, &status, 0, nil); err != nil {
		t.Fatalf("wait for the migrated vdso_kernels: %v", err)
	}
	out, _ := os.ReadFile(filepath.Join(dir, "vdso_kernels.out"))
	if !status.Exited() || status.ExitStatus() != 0 || !strings.Contains(string(out), "PASS") {
		t.Errorf("vdso_kernels migrated from the guest's kernel to this one: %v:\n%s", status, out)
	}
}

// copyTree copies the regular files of directory src, and those of its
// directories, to dst, their modes and times kept; the directories above
// dst that it makes are open to all.
func copyTree(src, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	return filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		to := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.MkdirAll(to, info.Mode().Perm())
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		if err := copyFile(path, to); err != nil {
			return err
		}
		if err := os.Chmod(to, info.Mode().Perm()); err != nil {
			return err
		}
		return os.Chtimes(to, info.ModTime(), info.ModTime())
	})
}

// pagesDumped matches the dump's log line for a process's memory.
var pagesDumped = regexp.MustCompile(`pid (\d+): \d+ threads, (\d+) pages dumped, (\d+) left to the parent images`)

// preDumpRound matches amber migrate's line for one pre-dump.
var preDumpRound = regexp.MustCompile(`pre-dump (\d+): (\d+) pages`)

// checkOldKernelConsole checks the guest's console: the kernel is one of
// the kind the test means, and every RESULT passed. It returns the
// RESULTs.
func checkOldKernelConsole(t *testing.T, console, version string) map[string]string {
	t.Helper()
	results := map[string]string{}
	var pages [][]string
	var features []string
	var rounds []int // pages of each of amber migrate's pre-dumps
	var afterFail [][]string
	sc := bufio.NewScanner(strings.NewReader(console))
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if i := strings.Index(line, "CHECK "); i >= 0 {
			features = append(features, line[i+len("CHECK "):])
		}
		if i := strings.Index(line, "RESULT "); i >= 0 {
			name, outcome, _ := strings.Cut(line[i+len("RESULT "):], " ")
			results[name] = outcome
		}
		if m := pagesDumped.FindStringSubmatch(line); m != nil && strings.Contains(line, "PAGES ") {
			pages = append(pages, m)
		}
		if m := pagesDumped.FindStringSubmatch(line); m != nil && strings.Contains(line, "AFTERFAIL ") {
			afterFail = append(afterFail, m)
		}
		if i := strings.Index(line, "LAZY "); i >= 0 {
			t.Logf("amber migrate --lazy in the guest: %s", line[i+len("LAZY "):])
		}
		if i := strings.Index(line, "TOHOST "); i >= 0 {
			t.Logf("amber migrate from the guest to here: %s", line[i+len("TOHOST "):])
		}
		if i := strings.Index(line, "XKERNEL "); i >= 0 {
			t.Logf("restore on the guest's kernel: %s", line[i+len("XKERNEL "):])
		}
		if m := preDumpRound.FindStringSubmatch(line); m != nil && strings.Contains(line, "MIGRATE ") {
			n, _ := strconv.Atoi(m[2])
			rounds = append(rounds, n)
		}
	}
	checkOldKernelFeatures(t, features, version)
	names := append([]string{"mem_dirty_track", "chain", "failed", "lazy", "migrate", "lazymigrate", "tohost"}, oldKernelPrograms...)
	for _, name := range crossKernelPrograms {
		names = append(names, "xkernel_"+name)
	}
	for _, name := range names {
		if got, ok := results[name]; !ok || got != "PASS" {
			t.Errorf("%s in the guest: %q", name, got)
		}
	}
	// The root and the child it forked between the pre-dumps: each
	// leaves its cold memory (8192 pages, never written after the first
	// pre-dump, nor in the child after its fork) to the pre-dumps (but
	// those in a transparent huge page with hot ones: the tracking marks
	// the whole huge page written), and
	// dumps its 512 hot pages, which it rewrites thousands of times a
	// second: most of them, or it left written pages to the pre-dumps,
	// which the program cannot tell when they all come from one (its
	// memory is then just older, and consistent).
	if len(pages) != 2 {
		t.Errorf("final dump: %d processes logged their pages, want 2", len(pages))
	}
	for _, m := range pages {
		dumped, _ := strconv.Atoi(m[2])
		left, _ := strconv.Atoi(m[3])
		t.Logf("final dump, pid %s: %d pages dumped, %d left to the pre-dumps", m[1], dumped, left)
		if left < 8192-512 || dumped >= 4096 || dumped < 400 {
			t.Errorf("final dump, pid %s: %d pages dumped, %d left to the pre-dumps; want the 8192 cold pages left (but those of a huge page shared with hot ones) and 400 to 4096 dumped", m[1], dumped, left)
		}
	}
	// A pre-dump that failed after resetting the tracking (the
	// soft-dirty bits cleared, or the write protection armed again)
	// moved the tracking's generation on and closed it (either is
	// enough): the dump on top of the pre-dump before copies every page,
	// the cold ones included, since the tracking no longer tells what
	// was written since that one. Without both, the program restores
	// stale pages.
	if len(afterFail) != 1 {
		t.Errorf("the dump after a failed pre-dump: %d processes logged their pages, want 1", len(afterFail))
	}
	for _, m := range afterFail {
		dumped, _ := strconv.Atoi(m[2])
		if left := m[3]; left != "0" || dumped < 8192+512 {
			t.Errorf("the dump after a failed pre-dump, pid %s: %d pages dumped, %s left to the pre-dump; want every page dumped", m[1], dumped, left)
		}
	}
	// amber migrate's pre-dumps after the first track memory: they send
	// the hot pages again, not the cold ones.
	t.Logf("amber migrate's pre-dumps: %v pages", rounds)
	if len(rounds) < 2 || rounds[0] < 8192 || slices.Max(rounds[1:]) >= 4096 {
		t.Errorf("amber migrate's pre-dumps sent %v pages: want the first with the 8192 cold pages, then at least one more with fewer than 4096", rounds)
	}
	if t.Failed() {
		t.Logf("console:\n%s", console)
	}
	return results
}

// copyModule copies module m (a path under kernel/, without .ko) of the
// kernel whose modules directory is dir to dst, uncompressed (Debian
// compresses them with xz since 6.7); a module built into the kernel is
// skipped.
func copyModule(dir, m, dst string) error {
	builtin, err := os.ReadFile(filepath.Join(dir, "modules.builtin"))
	if err != nil {
		return err
	}
	if slices.Contains(strings.Split(string(builtin), "\n"), "kernel/"+m+".ko") {
		return nil
	}
	src := filepath.Join(dir, "kernel", m+".ko")
	if _, err := os.Stat(src + ".xz"); err == nil {
		out, err := exec.Command("busybox", "xzcat", src+".xz").Output()
		if err != nil {
			return fmt.Errorf("xzcat %s.xz: %w", src, err)
		}
		return os.WriteFile(dst, out, 0o644)
	}
	return copyFile(src, dst)
}

// kernelFeatures are what amber check must say on a kernel of version
// (Debian's build, with soft-dirty bits): PAGEMAP_SCAN and asynchronous
// write protection came in 6.7, PR_TIMER_CREATE_RESTORE_IDS in 6.15. So
// the test knows which of amber's ways it tests on each kernel.
func kernelFeatures(version string) (map[string]string, error) {
	var major, minor int
	if _, err := fmt.Sscanf(version, "%d.%d", &major, &minor); err != nil {
		return nil, fmt.Errorf("kernel version %q: %w", version, err)
	}
	since := func(ma, mi int) string {
		if major > ma || major == ma && minor >= mi {
			return "present"
		}
		return "missing"
	}
	return map[string]string{"pagemap_scan": since(6, 7), "uffd_wp_async": since(6, 7),
		"timer_cr_ids": since(6, 15), "soft_dirty": "present"}, nil
}

// checkOldKernelFeatures checks the lines of amber check in the guest
// against the kernelFeatures of its version.
func checkOldKernelFeatures(t *testing.T, lines []string, version string) {
	t.Helper()
	want, err := kernelFeatures(version)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, line := range lines {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if w, ok := want[f[0]]; ok {
			seen[f[0]] = true
			if !strings.Contains(line, w) {
				t.Errorf("guest kernel: %s is not %s: %s", f[0], w, line)
			}
		}
	}
	for name := range want {
		if !seen[name] {
			t.Errorf("guest kernel: amber check did not report %s", name)
		}
	}
}
