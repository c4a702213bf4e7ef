#!/usr/bin/env bash
# Installs what berth needs on a fresh Debian machine, idempotently:
# the OCI runtimes (crun, runc), busybox-static for the test images, and
# the tools the tests drive. Safe to run again; does nothing when all is there.
# With "test", it also installs podman, which the tests use to check that
# images saved by berth load into another engine, skopeo, which the
# registry tests push to and pull from `berth registry` with, docker.io
# (dockerd and its docker CLI), which pulls and runs an image berth built
# and pushed, and docker-compose (v1, with Debian's docker-py), which drives
# berth through the Docker API.
set -euo pipefail

pairs="crun:crun runc:runc busybox:busybox-static ip:iproute2 nft:nftables tmux:tmux script:bsdutils"
[ "${1:-}" = test ] && pairs="$pairs podman:podman skopeo:skopeo dockerd:docker.io docker-compose:docker-compose"
need=()
for pair in $pairs; do
	cmd=${pair%%:*} pkg=${pair#*:}
	command -v "$cmd" >/dev/null 2>&1 || need+=("$pkg")
done
[ -x /bin/busybox ] && file /bin/busybox 2>/dev/null | grep -q dynamic && need+=(busybox-static)

if [ ${#need[@]} -gt 0 ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "install-deps: missing ${need[*]}; run as root (or apt-get install ${need[*]})" >&2
		exit 1
	fi
	echo "install-deps: installing ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if ! command -v go >/dev/null 2>&1; then
	if [ -x /usr/local/go/bin/go ]; then
		echo "install-deps: Go is at /usr/local/go/bin; add it to PATH" >&2
	else
		echo "install-deps: Go 1.26 is required (https://go.dev/dl/ or apt-get install golang)" >&2
		exit 1
	fi
fi
