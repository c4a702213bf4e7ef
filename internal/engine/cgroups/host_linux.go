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
