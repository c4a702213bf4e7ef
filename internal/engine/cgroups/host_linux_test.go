package cgroups

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestPrepareHostAndRealStats(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: mounts cgroup hierarchies and creates a cgroup")
	}
	if err := PrepareHost(); err != nil {
		t.Fatalf("PrepareHost: %v", err)
	}
	if err := PrepareHost(); err != nil {
		t.Fatalf("PrepareHost (second call must be idempotent): %v", err)
	}
	if Detect() {
		t.Skip("host is cgroup v2; the v1 path is covered by fixtures")
	}
	have, err := v1Controllers()
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(Root, "unified", "cgroup.controllers")); err == nil {
		for _, c := range strings.Fields(string(b)) {
			if !have[c] {
				t.Errorf("controller %q has no v1 hierarchy after PrepareHost", c)
			}
		}
	}
	// A real cgroup with the current process in it.
	p := "/berth-test-cgroups"
	for _, c := range []string{"memory", "cpuacct", "pids"} {
		dir := filepath.Join(Root, c, p)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		defer os.Remove(dir)
	}
	if err := os.WriteFile(filepath.Join(Root, "memory", p, "memory.limit_in_bytes"), []byte("104857600"), 0); err != nil {
		t.Fatal(err)
	}
	s, err := Stats(p)
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	if s.Memory.Limit != 104857600 {
		t.Errorf("memory limit %d, want 104857600", s.Memory.Limit)
	}
	if oom, err := OOMKilled(p); err != nil || oom {
		t.Errorf("OOMKilled = %v, %v; want false, nil", oom, err)
	}
}

func TestRemoveEverywhere(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root")
	}
	name := "berth-test-rm-" + strconv.Itoa(os.Getpid())
	ents, _ := os.ReadDir(Root)
	var made []string
	for _, e := range ents {
		if e.IsDir() {
			p := filepath.Join(Root, e.Name(), name)
			if os.Mkdir(p, 0o755) == nil {
				made = append(made, p)
			}
		}
	}
	if Detect() {
		p := filepath.Join(Root, name)
		if os.Mkdir(p, 0o755) == nil {
			made = append(made, p)
		}
	}
	if len(made) == 0 {
		t.Skip("no cgroup hierarchy to write to")
	}
	RemoveEverywhere(name)
	for _, p := range made {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s is still there", p)
			os.Remove(p)
		}
	}
}
