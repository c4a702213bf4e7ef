#!/usr/bin/env bash
# Runs the OCI distribution-spec conformance suite against `berth registry`,
# with every API of the suite enabled (OCI_VERSION=dev: pull, push, chunked
# and streamed uploads, mounts, tag params, referrers, tag/manifest/blob
# delete), twice: anonymously, then with htpasswd basic auth. Fails on any
# failed, errored or skipped test.
#
# usage: scripts/conformance.sh [BIN_DIR]   (default: bin; needs BIN_DIR/berth)
#
# The suite is a Go module on the module proxy; it is built in a temporary
# copy (our go.mod is untouched) and cached as BIN_DIR/oci-conformance-<ver>.
# Its reports (results.yaml, junit.xml, report.html) land in
# BIN_DIR/conformance/<run>/.
set -euo pipefail

bin=$(cd "${1:-bin}" && pwd)
mod=github.com/opencontainers/distribution-spec/conformance
ver=v0.0.0-20260831232431-97274622c111
suite=$bin/oci-conformance-$ver

work=$(mktemp -d)
pid=
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

if [ ! -x "$suite" ]; then
	dir=$(cd "$work" && GOFLAGS=-mod=mod go mod download -json "$mod@$ver" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	[ -d "$dir" ] || { echo "conformance: cannot download $mod@$ver" >&2; exit 1; }
	cp -r "$dir" "$work/src"
	chmod -R u+w "$work/src"
	(cd "$work/src" && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -o "$suite.tmp" .)
	mv "$suite.tmp" "$suite"
fi

# A bcrypt hash of "conformance-password" (htpasswd -B -b … conformance conformance-password).
htpasswd='conformance:$2y$10$2ae2jW2QuFnyUf/CfnitJepVACd9POr6UMsTw57hMkM.77s6rZQiS'

run() { # run NAME [registry flags...]
	local name=$1; shift
	local root=$work/$name-root log=$work/$name-registry.log res=$work/$name-results
	"$bin/berth" registry --addr 127.0.0.1:0 --root "$root" "$@" 2>"$log" &
	pid=$!
	local addr=
	for _ in $(seq 100); do
		addr=$(sed -n 's|.*url=https\?://\([^ ]*\).*|\1|p' "$log" | head -1)
		[ -n "$addr" ] && break
		kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; echo "conformance: berth registry did not start" >&2; exit 1; }
		sleep 0.1
	done
	[ -n "$addr" ] || { cat "$log" >&2; echo "conformance: berth registry did not start" >&2; exit 1; }
	local out=$work/$name.out status=0
	(cd "$work" && env OCI_REGISTRY="$addr" OCI_TLS=disabled OCI_VERSION=dev \
		OCI_REPO1=conformance/repo1 OCI_REPO2=conformance/repo2 \
		OCI_RESULTS_DIR="$res" OCI_LOG=warn "${creds[@]}" "$suite") >"$out" 2>&1 || status=$?
	kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
	mkdir -p "$bin/conformance/$name" && cp "$res"/* "$out" "$bin/conformance/$name/" 2>/dev/null || true
	local counts pass fail err skip dis
	counts=$(sed -n '/^OCI Conformance Result/,/Total/p' "$out")
	count() { echo "$counts" | awk -v k="$1" '$1 ~ "^"k"\\.*:$" { print $2 }'; }
	pass=$(count Pass) fail=$(count FAIL) err=$(count Error) skip=$(count Skip) dis=$(count Disabled)
	echo "conformance ($name): ${pass:-?} passed, ${fail:-?} failed, ${err:-?} errors, ${skip:-?} skipped, ${dis:-?} disabled"
	local bad=
	[ "${fail:-1}${err:-1}${skip:-1}" = 000 ] || bad=1
	if [ "$status" != 0 ] || [ -n "$bad" ] || ! grep -q '^OCI Conformance Result: Pass' "$out"; then
		grep -E ': (FAIL|Error|Skip)$|^ +- ' "$out" | head -80 >&2 || true
		echo "conformance ($name): FAILED; full output and report.html in $bin/conformance/$name" >&2
		return 1
	fi
}

creds=()
run anonymous
echo "$htpasswd" >"$work/htpasswd"
creds=(OCI_USERNAME=conformance OCI_PASSWORD=conformance-password)
run basic-auth --htpasswd "$work/htpasswd"
