#!/usr/bin/env bash
# `make run`: start the berth daemon (if it is not already running), load
# the demo image and run a first container, then print what to try next.
set -euo pipefail
BIN=$1 IMAGES=$2 ROOT=$3 SOCK=$4
BERTH="$BIN/berth -H unix://$SOCK"
LOG=/var/log/berth-daemon.log

if ! $BERTH version >/dev/null 2>&1; then
	echo "starting berth daemon (root $ROOT, socket $SOCK, log $LOG)"
	setsid "$BIN/berth" daemon --root "$ROOT" --socket "$SOCK" >>"$LOG" 2>&1 < /dev/null &
	for _ in $(seq 100); do
		$BERTH version >/dev/null 2>&1 && break
		sleep 0.1
	done
	if ! $BERTH version >/dev/null 2>&1; then
		echo "berth daemon did not start; last lines of $LOG:" >&2
		tail -n 20 "$LOG" >&2
		exit 1
	fi
fi

$BERTH load -i "$IMAGES/busybox-docker.tar"
echo
echo "+ berth run --rm busybox sh -c 'echo hello from \$(hostname), PID \$\$; id'"
$BERTH run --rm busybox sh -c 'echo hello from $(hostname), PID $$; id'
cat <<TXT

The berth daemon is running (socket $SOCK, state in $ROOT, log $LOG).
Try next (add -H unix://$SOCK if you changed SOCK):
  $BIN/berth run -d --name ticker --restart always -m 64m busybox sh -c 'while true; do date; sleep 2; done'
  $BIN/berth ps
  $BIN/berth logs -f ticker
  $BIN/berth exec -it ticker sh
  $BIN/berth stats --no-stream
  $BIN/berth run -it --rm busybox sh
  $BIN/berth images; $BIN/berth save -o busybox.tar busybox
  printf 'FROM busybox\nRUN echo built > /hi\nCMD ["cat", "/hi"]\n' | $BIN/berth build -t hi -   # a Dockerfile on stdin
  $BIN/berth registry --addr 127.0.0.1:5000 --root /tmp/reg &   # then: berth tag hi 127.0.0.1:5000/hi; berth push 127.0.0.1:5000/hi
  DOCKER_HOST=unix://$SOCK docker ps   # the stock docker CLI speaks to berth too
  $BIN/berth rm -f ticker
Stop the daemon with 'make stop' (containers keep running; a new daemon reattaches).
TXT
