package runtime

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/berth/berth/internal/errdefs"
)

// allCaps lists Linux capabilities by number.
var allCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
	"CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
	"CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK",
	"CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
	"CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE",
	"CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE",
	"CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
	"CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
	"CAP_CHECKPOINT_RESTORE",
}

// DefaultCaps is Docker's default capability set.
var DefaultCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
	"CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

// normalizeCap turns "sys_admin", "CAP_SYS_ADMIN" or "ALL" into canonical form.
func normalizeCap(c string) (string, error) {
	u := strings.ToUpper(strings.TrimSpace(c))
	if u == "ALL" {
		return "ALL", nil
	}
	if !strings.HasPrefix(u, "CAP_") {
		u = "CAP_" + u
	}
	for _, k := range allCaps {
		if k == u {
			return u, nil
		}
	}
	return "", fmt.Errorf("capability %q: %w: want a Linux capability name such as NET_ADMIN or ALL", c, errdefs.ErrInvalidArgument)
}

// hostCapBound returns the capability bounding set of this process (which
// a container cannot exceed), or all ones if unknown. Tests replace it.
var hostCapBound = func() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return ^uint64(0)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapBnd:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err == nil {
				return n
			}
		}
	}
	return ^uint64(0)
}

func capIndex(name string) int {
	for i, k := range allCaps {
		if k == name {
			return i
		}
	}
	return -1
}

// capabilities computes the set from defaults (or everything for
// privileged) plus add minus drop, limited to what the host can grant.
func capabilities(privileged bool, add, drop []string) ([]string, error) {
	bound := hostCapBound()
	set := map[string]bool{}
	hostHas := func(c string) bool { i := capIndex(c); return i >= 0 && bound&(1<<uint(i)) != 0 }
	if privileged {
		for _, c := range allCaps {
			if hostHas(c) {
				set[c] = true
			}
		}
	} else {
		for _, c := range DefaultCaps {
			set[c] = true
		}
	}
	for _, a := range add {
		c, err := normalizeCap(a)
		if err != nil {
			return nil, err
		}
		if c == "ALL" {
			for _, k := range allCaps {
				if hostHas(k) {
					set[k] = true
				}
			}
			continue
		}
		if !hostHas(c) {
			return nil, fmt.Errorf("capability %q: %w: this host's bounding set does not include it, so no container can have it", a, errdefs.ErrInvalidArgument)
		}
		set[c] = true
	}
	for _, d := range drop {
		c, err := normalizeCap(d)
		if err != nil {
			return nil, err
		}
		if c == "ALL" {
			set = map[string]bool{}
			// Docker: --cap-drop ALL --cap-add X keeps X.
			for _, a := range add {
				if n, _ := normalizeCap(a); n != "ALL" && n != "" {
					set[n] = true
				}
			}
			continue
		}
		delete(set, c)
	}
	out := make([]string, 0, len(set))
	for c := range set {
		out = append(out, c)
	}
	sort.Strings(out)
	return out, nil
}
