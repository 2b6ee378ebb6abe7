#!/bin/sh
# demo.sh — what "make demo" runs: build uprobefs and a demo program, mount
# uprobefs in a temporary directory, start the program from a private copy,
# probe it by symbol, show hits rising and a few events, unregister, unmount.
# It leaves nothing behind: no mount, no process, no temporary file (also
# when interrupted). Run it as root from the repository (make demo).
set -eu

repo=$(cd "$(dirname "$0")/.." && pwd)
GO=${GO:-go}
CC=${CC:-cc}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/uprobefs-demo.XXXXXX")
mnt=$tmp/mnt
ufs_pid=
demo_pid=

cleanup() {
	status=$?
	trap - EXIT INT TERM
	[ -n "$demo_pid" ] && kill "$demo_pid" 2>/dev/null && wait "$demo_pid" 2>/dev/null
	if [ -n "$ufs_pid" ] && kill -0 "$ufs_pid" 2>/dev/null; then
		kill -TERM "$ufs_pid" 2>/dev/null
		wait "$ufs_pid" 2>/dev/null
	fi
	if grep -q " $mnt fuse.uprobefs " /proc/mounts 2>/dev/null; then
		umount "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || fusermount3 -uz "$mnt" 2>/dev/null
	fi
	rm -rf "$tmp"
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; sh -c "$*"; }

step "build uprobefs and the demo program (into $tmp)"
(cd "$repo" && "$GO" build -o "$tmp/uprobefs" ./cmd/uprobefs)
"$CC" -O2 -g -o "$tmp/demo" "$repo/demo/demo.c"

step "mount uprobefs at $mnt"
mkdir "$mnt"
"$tmp/uprobefs" mount "$mnt" 2>"$tmp/uprobefs.log" &
ufs_pid=$!
i=0
until grep -q " $mnt fuse.uprobefs " /proc/mounts; do
	i=$((i + 1))
	if [ $i -gt 200 ] || ! kill -0 "$ufs_pid" 2>/dev/null; then
		echo "demo: uprobefs did not mount:" >&2
		cat "$tmp/uprobefs.log" >&2
		exit 1
	fi
	sleep 0.05
done
echo "mounted (uprobefs pid $ufs_pid)"

step "start the demo program (a private copy: $tmp/demo)"
"$tmp/demo" &
demo_pid=$!
echo "demo pid $demo_pid"
P=$mnt$tmp/demo

step "register a probe on the symbol handle_request"
show "echo handle_request > $P/probes"
show "cat $P/probes"
show "ls $P $P/handle_request"
show "cat $P/handle_request/status"

step "hits rise while the program runs"
for i in 1 2 3; do
	sleep 1
	show "cat $P/handle_request/hits"
done

step "a few events (time, pid, tid, address)"
show "head -n 5 $P/handle_request/events"

step "a refused request gets an errno and a line in the error log"
show "env echo handle_request+1 > $P/probes || true"
show "tail -n 1 $mnt/.uprobefs/errors"
show "cat $mnt/.uprobefs/stats"

step "unregister: the program runs on, untraced, with its original code"
show "rmdir $P/handle_request"
show "ls $P"
show "grep TracerPid /proc/$demo_pid/status"

step "unmount: uprobefs shuts down cleanly"
show "$tmp/uprobefs umount $mnt"
wait "$ufs_pid"
echo "uprobefs exited with status $?"
ufs_pid=
sed 's/^/  log: /' "$tmp/uprobefs.log"
kill "$demo_pid"
wait "$demo_pid" 2>/dev/null || true
demo_pid=
printf '\ndemo done: nothing left behind (%s removed)\n' "$tmp"
