package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
)

// hostPaths are places outside the work directory that dockerd, containerd
// and podman create even when pointed at their own roots: the containerd
// shim socket directory, docker's plugin directory and trust key, podman's
// blob-info cache and network directory, and the parent cgroups they make in
// every hierarchy.
var hostPaths = []string{
	"/run/docker", "/run/containerd", "/run/containers", "/run/libpod",
	"/var/lib/containers", "/etc/docker",
}

var cgroupParents = []string{"docker", "libpod_parent"}

// runtimeDirs are the default state roots of crun and runc, which podman's
// and docker's runtimes may create; they are removed only when empty.
var runtimeDirs = []string{"/run/crun", "/run/runc"}

// hostState remembers which of those paths existed before the benchmark, so
// that it removes only what it created.
type hostState struct{ existed map[string]bool }

func hostCandidates() []string {
	paths := append(append([]string{}, hostPaths...), runtimeDirs...)
	hier, _ := filepath.Glob("/sys/fs/cgroup/*")
	for _, h := range hier {
		for _, p := range cgroupParents {
			paths = append(paths, filepath.Join(h, p))
		}
	}
	return paths
}

func snapshotHost() hostState {
	s := hostState{existed: map[string]bool{}}
	for _, p := range hostCandidates() {
		if _, err := os.Lstat(p); err == nil {
			s.existed[p] = true
		}
	}
	return s
}

// restore removes the candidate paths that did not exist at the snapshot.
// Cgroup directories are removed bottom-up with rmdir, which fails (and is
// reported) while a process is still in one.
func (s hostState) restore() []error {
	var errs []error
	for _, p := range hostCandidates() {
		if s.existed[p] {
			continue
		}
		if _, err := os.Lstat(p); err != nil {
			continue
		}
		if slices.Contains(runtimeDirs, p) {
			os.Remove(p) // fails, and stays, when not empty
			continue
		}
		if filepath.Dir(filepath.Dir(p)) == "/sys/fs/cgroup" {
			if err := rmdirTree(p); err != nil {
				errs = append(errs, err)
			}
			continue
		}
		if err := os.RemoveAll(p); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// removeBenchCgroups removes the cgroups the bare runtimes made for this
// process's containers (named bench-*-PID-N) if any is left, and says which.
func removeBenchCgroups() []string {
	var left []string
	dirs, _ := filepath.Glob(fmt.Sprintf("/sys/fs/cgroup/*/bench-*-%d-*", os.Getpid()))
	for _, d := range dirs {
		if err := rmdirTree(d); err != nil {
			left = append(left, fmt.Sprintf("cgroup %s: %v", d, err))
		} else {
			left = append(left, fmt.Sprintf("cgroup %s was left behind; removed", d))
		}
	}
	return left
}

// rmdirTree removes an empty cgroup directory tree, deepest first.
func rmdirTree(root string) error {
	var dirs []string
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	var errs []error
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := os.Remove(dirs[i]); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
