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
		{"github.com/berth/berth/cmd/berth-shim", []string{"github.com/spf13/cobra", "net/http", "github.com/opencontainers/runtime-spec", "encoding/json"}},
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
