package main

import (
	"os/exec"
	"strings"
	"testing"
)

// deps lists the packages a package links, with `go list -deps`.
func deps(t *testing.T, pkg string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", pkg).Output()
	if err != nil {
		t.Skipf("go list unavailable: %v", err)
	}
	return strings.Fields(string(out))
}

// TestDependencyDirection keeps the engine free of cluster code, and the
// CLI/engine binary and the shim free of the control plane's heavy
// dependencies (each costs start time on every command and container).
func TestDependencyDirection(t *testing.T) {
	for _, tc := range []struct {
		pkg       string
		forbidden []string
	}{
		{"github.com/berth/berth/internal/engine/...", []string{"github.com/berth/berth/internal/cluster", "go.etcd.io/", "k8s.io/"}},
		{"github.com/berth/berth/cmd/berth", []string{"github.com/berth/berth/internal/cluster", "go.etcd.io/", "k8s.io/", "google.golang.org/grpc"}},
	} {
		for _, d := range deps(t, tc.pkg) {
			for _, f := range tc.forbidden {
				if strings.HasPrefix(d, f) {
					t.Errorf("%s links %s (forbidden: %s)", tc.pkg, d, f)
				}
			}
		}
	}
}

// TestShimLinksOnlySyscall keeps berth-shim within the packages it may
// link. A static binary this small is resident almost whole, so every
// package costs every container its size in RSS (issue 2's target is
// 2 MiB per monitor); os alone adds about 300 KiB.
func TestShimLinksOnlySyscall(t *testing.T) {
	allowed := map[string]bool{
		"runtime": true, "unsafe": true, "sync": true, "sync/atomic": true, "errors": true, "math/bits": true,
		"cmp": true, "iter": true, "slices": true, "syscall": true, "unicode/utf8": true,
		"github.com/berth/berth/cmd/berth-shim":                  true,
		"github.com/berth/berth/internal/engine/shim/monitor":    true,
		"github.com/berth/berth/internal/engine/shim/wire/names": true,
		"github.com/berth/berth/internal/engine/logs/crilog":     true,
	}
	for _, d := range deps(t, "github.com/berth/berth/cmd/berth-shim") {
		if !allowed[d] && !strings.HasPrefix(d, "internal/") {
			t.Errorf("berth-shim links %s; it may link only package syscall, the runtime's internals and %v", d, allowed)
		}
	}
}
