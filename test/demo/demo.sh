#!/usr/bin/env bash
# amber demo: checkpoint a running counter, let amber kill it, restore it,
# and watch it count on from where it was. Run it with `make demo` (as root).
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
amber=${AMBER:-$root/bin/amber}

if [ -t 1 ]; then bold=$'\e[1m' plain=$'\e[0m'; else bold= plain=; fi
say() { printf '\n%s==> %s%s\n' "$bold" "$*" "$plain"; }
fail() {
	printf '\n%sdemo failed: %s%s\n' "$bold" "$*" "$plain" >&2
	printf 'Its files (output, images, logs) are kept in %s\n' "$work" >&2
	keep=1
	exit 1
}

if [ "$(id -u)" != 0 ]; then
	echo "demo: amber needs root to dump and restore; run: sudo make demo" >&2
	exit 1
fi
if [ ! -x "$amber" ]; then
	(cd "$root" && go build -o bin/amber ./cmd/amber)
fi

work=$(mktemp -d /tmp/amber-demo.XXXXXX)
exec 3>&2
keep=0 counter= amber_pid=
cleanup() {
	{
		for pid in $counter $amber_pid; do kill -KILL "$pid" || true; done
		wait || true
	} 2>/dev/null
	if [ "$keep" = 0 ]; then rm -rf "$work"; fi
}
trap cleanup EXIT
cd "$work"

say "Building the demo program: a counter that prints 0, 1, 2, ... every 200 ms"
gcc -O2 -Wall -o counter "$root/test/demo/counter.c"

say "Starting it in a session of its own, writing to $work/counter.out"
setsid ./counter >>counter.out 2>&1 </dev/null &
counter=$!
sleep 1.5
ps -o pid,ppid,stat,cmd -p "$counter"
echo "Its last lines:"
tail -n 3 counter.out

say "Dumping it: amber dump -t $counter -D images (after the dump amber kills it)"
mkdir images
# The counter is this script's child: reap it once amber has killed it.
# (The braces keep bash from reporting the kill.)
status=0
{
	"$amber" dump -t "$counter" -D images -v4 -o dump.log 2>&3 || status=$?
	if [ "$status" = 0 ]; then wait "$counter" || true; fi
} 2>/dev/null
[ "$status" = 0 ] || fail "amber dump exited with status $status (log: $work/images/dump.log)"
pid=$counter counter=
last=$(tail -n 1 counter.out)
lines=$(wc -l <counter.out)
echo "The images:"
ls -l images
say "The counter is gone; it had counted up to $last"
ps -o pid,ppid,stat,cmd -p "$pid" || echo "(no process $pid)"
sleep 1
echo "Its output did not grow: still $(wc -l <counter.out) lines, last '$(tail -n 1 counter.out)'"

say "Restoring it: amber restore -D images (not detached: amber stays its parent and reaps it)"
"$amber" restore -D images -v4 -o restore.log --pidfile "$work/pid" &
amber_pid=$!
sleep 1.5
if ! kill -0 "$amber_pid" 2>/dev/null; then
	status=0
	wait "$amber_pid" || status=$?
	amber_pid=
	fail "amber restore exited with status $status (log: $work/images/restore.log)"
fi
[ -s pid ] && pid=$(cat pid)
counter=$pid
ps -o pid,ppid,stat,cmd -p "$amber_pid,$pid"
echo "Its first lines since the restore:"
tail -n "+$((lines + 1))" counter.out | head -n 5
first=$(tail -n "+$((lines + 1))" counter.out | head -n 1)
if [ "$first" = "$((last + 1))" ]; then
	say "It counts on from $last: its memory came back, it did not start again from 0"
else
	fail "after $last it printed '$first'; want $((last + 1))"
fi

say "Stopping it with SIGTERM; amber, its parent, exits with its status"
kill -TERM "$pid"
status=0
wait "$amber_pid" || status=$?
amber_pid= counter=
tail -n 1 counter.out
echo "amber restore exited with status $status"
ps -o pid,stat,cmd -p "$pid" >/dev/null && fail "process $pid is still there" || echo "(no process $pid: reaped, no zombie)"
[ "$status" = 0 ] || fail "amber restore exited with status $status"
say "Done. Cleaning up $work"
