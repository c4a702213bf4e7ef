package cgroups

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Detect reports whether the host runs the unified (v2-only) hierarchy.
func Detect() bool {
	var st unix.Statfs_t
	if err := unix.Statfs(Root, &st); err != nil {
		return false
	}
	return st.Type == unix.CGROUP2_SUPER_MAGIC
}

// PrepareHost makes a hybrid v1 host acceptable to crun: every controller
// the cgroup2 mount (Root/unified) offers must also have a v1 hierarchy, or
// crun refuses with "cgroups in hybrid mode not supported". It mounts the
// missing ones (hugetlb on Debian hybrid hosts) at Root/<controller>. It is
// idempotent and does nothing on a pure v1 or v2 host.
func PrepareHost() error {
	if Detect() {
		return nil
	}
	unified := filepath.Join(Root, "unified")
	b, err := os.ReadFile(filepath.Join(unified, "cgroup.controllers"))
	if err != nil {
		if os.IsNotExist(err) {
			return nil // pure v1
		}
		return wrapErr("prepare cgroups: read "+unified, err)
	}
	have, err := v1Controllers()
	if err != nil {
		return wrapErr("prepare cgroups", err)
	}
	for _, c := range strings.Fields(string(b)) {
		if have[c] {
			continue
		}
		dir := filepath.Join(Root, c)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return wrapErr("prepare cgroups: controller "+strconv.Quote(c)+" is only on cgroup2 and crun needs a v1 hierarchy for it; mkdir "+dir, err)
		}
		if err := unix.Mount("cgroup", dir, "cgroup", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, c); err != nil {
			return wrapErr("prepare cgroups: controller "+strconv.Quote(c)+" is only on cgroup2 and crun needs a v1 hierarchy for it (run as root); mount -t cgroup -o "+c+" cgroup "+dir, err)
		}
	}
	return nil
}

// v1Controllers returns the controllers mounted as v1 hierarchies.
func v1Controllers() (map[string]bool, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	have := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// ... - fstype source superopts
		_, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		fields := strings.Fields(post)
		if len(fields) < 3 || fields[0] != "cgroup" {
			continue
		}
		for _, o := range strings.Split(fields[2], ",") {
			have[o] = true
		}
	}
	return have, sc.Err()
}

// RestoreMounts mounts the cgroup hierarchies at Root when nothing is
// mounted there, as `ip netns exec` leaves a process (it mounts a fresh
// sysfs on /sys in a mount namespace of its own, where /sys/fs/cgroup is an
// empty directory, and crun then fails with "invalid file system type on
// '/sys/fs/cgroup'"). The hierarchies are those this process belongs to
// (/proc/self/cgroup), with the same controllers co-mounted, so they are
// the host's own hierarchies, seen again; the layout is systemd's (a tmpfs
// with one directory per hierarchy, "unified" for cgroup2 on a hybrid
// host, symlinks such as cpu -> cpu,cpuacct). It reports whether it
// mounted anything. A Root that holds any mount is left alone.
func RestoreMounts() (bool, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(Root, &st); err != nil || st.Type != unix.SYSFS_MAGIC {
		return false, nil
	}
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return false, wrapErr("restore cgroup mounts", err)
	}
	type hier struct{ dir, opts string }
	var v1 []hier
	unified := false
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.SplitN(l, ":", 3)
		if len(f) != 3 {
			continue
		}
		switch {
		case f[0] == "0" && f[1] == "":
			unified = true
		case strings.HasPrefix(f[1], "name="):
			v1 = append(v1, hier{dir: strings.TrimPrefix(f[1], "name="), opts: "none," + f[1]})
		case f[1] != "":
			v1 = append(v1, hier{dir: f[1], opts: f[1]})
		}
	}
	const flags = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
	mount := func(fstype, dir, opts string) error {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return wrapErr("restore cgroup mounts: mkdir "+dir, err)
		}
		if err := unix.Mount(fstype, dir, fstype, flags, opts); err != nil {
			return wrapErr("restore cgroup mounts: mount -t "+fstype+" -o "+opts+" "+dir, err)
		}
		return nil
	}
	if len(v1) == 0 {
		if !unified {
			return false, nil
		}
		return true, mount("cgroup2", Root, "")
	}
	if err := mount("tmpfs", Root, "mode=755"); err != nil {
		return false, err
	}
	for _, h := range v1 {
		if err := mount("cgroup", filepath.Join(Root, h.dir), h.opts); err != nil {
			return true, err
		}
		if ctrls := strings.Split(h.dir, ","); len(ctrls) > 1 {
			for _, c := range ctrls {
				os.Symlink(h.dir, filepath.Join(Root, c))
			}
		}
	}
	if unified {
		if err := mount("cgroup2", filepath.Join(Root, "unified"), ""); err != nil {
			return true, err
		}
	}
	return true, nil
}

// RemoveEverywhere removes the empty cgroup directory cgroupsPath from
// every hierarchy mounted under Root: the unified one on a v2 host; each v1
// controller's and, on a hybrid host, the unified mount's. Runtimes create
// a container's parent directories in all of them and remove only the
// container's own, so whoever chose the parent (a test's --cgroup-parent)
// removes it this way. Errors (not empty, absent) are ignored.
func RemoveEverywhere(cgroupsPath string) {
	if Detect() {
		os.Remove(filepath.Join(Root, cgroupsPath))
		return
	}
	ents, _ := os.ReadDir(Root)
	for _, e := range ents {
		if e.IsDir() {
			os.Remove(filepath.Join(Root, e.Name(), cgroupsPath))
		}
	}
}
