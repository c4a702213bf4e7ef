#!/usr/bin/env bash
# The engine benchmark behind `make bench`: berth beside bare crun and runc,
# podman and docker, in one interleaved run, then the networking figures of
# issue 3 (see docs/benchmarks.md).
#
#   scripts/bench.sh BIN TESTIMG [flags of tests/bench/engine ...]
#
# BIN holds berth and berth-shim; TESTIMG holds busybox-docker.tar and
# progs.tar. Extra
# flags (or BENCH_ARGS in the environment) go to the benchmark program, e.g.
# `-rounds 10 -engines berth,crun`. The markdown report goes to stdout and
# to BENCH_OUT (default BIN/bench.md). Run as root.
#
# It installs the peers from Debian if missing (crun, runc, podman,
# docker.io), binds hugetlb to a cgroup v1 hierarchy when crun needs it, and
# removes everything it started on exit, even when the benchmark program is
# killed.
set -euo pipefail

if [ $# -lt 2 ]; then
	echo "usage: scripts/bench.sh BIN TESTIMG [bench flags...]" >&2
	exit 2
fi
BIN=$(cd "$1" && pwd)
TESTIMG=$(cd "$2" && pwd)
shift 2
OUT=${BENCH_OUT:-$BIN/bench.md}

if [ "$(id -u)" != 0 ]; then
	echo "bench: must run as root (it starts dockerd, a berth daemon and containers)" >&2
	exit 1
fi
for f in "$BIN/berth" "$BIN/berth-shim" "$TESTIMG/busybox-docker.tar"; do
	if [ ! -e "$f" ]; then
		echo "bench: $f is missing; want the output of make build and make testimages" >&2
		exit 1
	fi
done
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH

# Peers, idempotently. dockerd comes from docker.io.
need=()
for pair in crun:crun runc:runc podman:podman conmon:conmon dockerd:docker.io containerd:containerd; do
	cmd=${pair%%:*} pkg=${pair#*:}
	command -v "$cmd" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
	echo "bench: installing ${need[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq "${need[@]}" >/dev/null
fi

# crun 1.8 refuses to run on a hybrid host while the cgroup2 mount offers a
# controller that has no v1 hierarchy (hugetlb here); binding hugetlb to a v1
# hierarchy clears it. The berth daemon does the same at start.
if [ "$(stat -f -c %T /sys/fs/cgroup)" != cgroup2fs ] && grep -qw '^hugetlb' /proc/cgroups &&
	! mountpoint -q /sys/fs/cgroup/hugetlb; then
	mkdir -p /sys/fs/cgroup/hugetlb
	mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb ||
		echo "bench: could not bind hugetlb to /sys/fs/cgroup/hugetlb; crun may refuse to run" >&2
fi

work=$(mktemp -d /var/tmp/berth-bench.XXXXXX)
# What dockerd, containerd and podman create outside their roots (the same
# list as tests/bench/engine/hostfiles.go), to remove after a hard kill.
host_paths() {
	local p
	for p in /run/docker /run/containerd /run/containers /run/libpod /var/lib/containers /etc/docker \
		/run/crun /run/runc /sys/fs/cgroup/*/docker /sys/fs/cgroup/*/libpod_parent; do
		if [ -e "$p" ]; then echo "$p"; fi
	done
}
pre_paths=$(host_paths)

# The benchmark program cleans up after itself, also on SIGINT/SIGTERM. This
# is the net for when it is killed outright: any process still naming the
# work directory (dockerd, containerd, shims, the berth daemon) is stopped,
# mounts under it are detached and the directory is removed.
descendants() {
	local c
	for c in $(pgrep -P "$1"); do
		echo "$c"
		descendants "$c"
	done
}

cleanup() {
	local rc=$? pids=() p
	set +e # a cleanup step that finds nothing to do must not stop the rest
	for p in /proc/[0-9]*; do
		p=${p#/proc/}
		[ "$p" = $$ ] && continue
		tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline" | grep -qF "$work" && pids+=("$p")
	done
	# With their descendants: the containers under a shim, conmon or containerd.
	for p in "${pids[@]}"; do
		# shellcheck disable=SC2207 # pids are single words
		pids+=($(descendants "$p"))
	done
	if [ ${#pids[@]} -gt 0 ]; then
		echo "bench: stopping leftover processes ${pids[*]}" >&2
		kill -TERM "${pids[@]}" 2>/dev/null || true
		sleep 2
		kill -KILL "${pids[@]}" 2>/dev/null || true
	fi
	findmnt -rn -o TARGET | grep -F "$work" | sort -r | while read -r m; do
		umount -l "$m" 2>/dev/null || true
	done
	rm -rf "$work"
	# Bare-runtime containers have no monitor: kill what is left in their
	# cgroups (named bench-*-PID-N by the program). Then remove the cgroups,
	# and the host paths the peers made that did not exist before.
	local cg
	for cg in /sys/fs/cgroup/*/bench-*-"${child:-0}"-*; do
		[ -f "$cg/cgroup.procs" ] && xargs -r kill -KILL <"$cg/cgroup.procs" 2>/dev/null
	done
	sleep 0.2
	for p in $(host_paths); do
		[ -e "$p" ] || continue
		grep -qxF "$p" <<<"$pre_paths" && continue
		case $p in
		/sys/fs/cgroup/*) find "$p" -depth -type d -exec rmdir {} \; 2>/dev/null ;;
		/run/crun | /run/runc) rmdir "$p" 2>/dev/null ;;
		*) rm -rf "$p" ;;
		esac
	done
	for cg in /sys/fs/cgroup/*/bench-*-"${child:-0}"-*; do
		rmdir "$cg" 2>/dev/null
	done
	# The networking step's namespaces (they take the veth pair, docker0,
	# podman0 and their rules with them) and, should the berth daemon have
	# died before its --cleanup ran, its bridge.
	for p in peers a b; do
		ip netns del "bbench-$p-${child:-0}" 2>/dev/null
	done
	ip link del bbench0 2>/dev/null
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

go build -o "$work/bench" ./tests/bench/engine
# In the background so that a signal to this script reaches the trap at once;
# it is passed on, and the program stops its engines before it exits.
# shellcheck disable=SC2086 # BENCH_ARGS is a list of flags
"$work/bench" -bin "$BIN" -images "$TESTIMG" -work "$work/run" -out "$OUT" ${BENCH_ARGS:-} "$@" &
child=$!
trap 'kill -TERM "$child" 2>/dev/null; wait "$child"; exit 130' INT TERM HUP
wait "$child"
echo "bench: report written to $OUT" >&2
