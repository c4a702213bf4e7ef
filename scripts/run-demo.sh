#!/usr/bin/env bash
# `make run`: start the berth daemon (if it is not already running), load
# the demo image and run a first container, then start `berth server` as an
# all-in-one node (control plane + node agent on this engine) and print
# what to try next.
set -euo pipefail
BIN=$1 IMAGES=$2 ROOT=$3 SOCK=$4
REPO=$(cd "$(dirname "$0")/.." && pwd)
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
SERVER_DIR=/var/lib/berth/server
SERVER_LOG=/var/log/berth-server.log
KUBECONFIG_PATH=$SERVER_DIR/kubeconfig
NODE=$(hostname | tr 'A-Z' 'a-z')
KUBECTL="kubectl --kubeconfig $KUBECONFIG_PATH"
if ! pgrep -f "berth-server server --data-dir $SERVER_DIR" >/dev/null; then
	echo
	echo "starting berth server, an all-in-one node (data $SERVER_DIR, log $SERVER_LOG)"
	setsid "$BIN/berth-server" server --data-dir "$SERVER_DIR" --engine "unix://$SOCK" >>"$SERVER_LOG" 2>&1 < /dev/null &
fi
for _ in $(seq 300); do
	if [ -f "$KUBECONFIG_PATH" ] && $KUBECTL get node "$NODE" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null | grep -q True; then
		break
	fi
	sleep 0.2
done
if ! $KUBECTL get node "$NODE" >/dev/null 2>&1; then
	echo "berth server did not register node $NODE; last lines of $SERVER_LOG:" >&2
	tail -n 20 "$SERVER_LOG" >&2
	exit 1
fi
echo "+ kubectl get nodes"
$KUBECTL get nodes -o wide

cat <<TXT

The control plane and this host's node agent are running (log $SERVER_LOG).
Kubeconfig: $KUBECONFIG_PATH
A first Deployment (three web servers with a readiness probe):
  export KUBECONFIG=$KUBECONFIG_PATH
  kubectl apply -f $REPO/examples/web-deployment.yaml
  kubectl rollout status deploy/web      # ready in about 2 s
  kubectl get pods -o wide
  kubectl exec deploy/web -- wget -qO- localhost:8080/hostname
  kubectl exec deploy/web -- wget -qO- web/hostname   # the Service by name, a random replica each time
  kubectl patch deploy web -p '{"spec":{"template":{"metadata":{"annotations":{"v":"2"}}}}}'   # a rolling update
  kubectl rollout history deploy/web; kubectl rollout undo deploy/web
  kubectl delete pod -l app=web --wait=false; kubectl get pods -w   # replaced at once
  kubectl get events
(busybox:latest is loaded in the engine; with :latest the default pull
policy is Always, which needs a registry, hence IfNotPresent in the file.)

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
Stop both with 'make stop' (containers keep running; a new daemon and agent adopt them).
TXT
