// Package runtime owns berth's seam to OCI runtimes: it generates hardened
// OCI runtime specs (namespaces, capabilities, seccomp, masked paths, minimal
// /dev, cgroup resources for v1 and v2), resolves users and commands inside a
// container's rootfs without escaping it, and drives runtime binaries (crun,
// runc or any OCI runtime) for kill, delete, pause, resume, state and ps.
//
// Starting processes is the shim's job (package shim); this package never
// holds a container's stdio.
package runtime

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/berth/berth/internal/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// SpecOpts describe one container for Generate. Zero values mean Docker's
// defaults.
type SpecOpts struct {
	ID string
	// Rootfs is an already-mounted root directory (absolute).
	Rootfs         string
	ReadonlyRootfs bool
	Args, Env      []string
	Cwd            string
	UID, GID       uint32
	AdditionalGids []uint32
	Hostname       string
	Terminal       bool
	// ConsoleHeight and ConsoleWidth set the pty's initial size (docker
	// run -t passes the client's); a later shim Resize changes it.
	ConsoleHeight, ConsoleWidth uint

	// Memory limits in bytes; MemorySwap is memory+swap as Docker's
	// --memory-swap (-1 unlimited swap, 0 = twice Memory).
	Memory, MemorySwap, MemoryReservation int64
	// NanoCPUs is --cpus × 1e9; exclusive with CPUQuota.
	NanoCPUs, CPUShares, CPUQuota, CPUPeriod int64
	CpusetCpus                               string
	// PidsLimit: 0 unset, -1 unlimited.
	PidsLimit   int64
	BlkioWeight uint16
	CgroupsPath string
	// CgroupV2 says the host runs the unified hierarchy; the emitted spec
	// is valid for both, this only changes what is validated.
	CgroupV2 bool

	// NetNSPath: "" a new network namespace (loopback only), "host" the
	// host's, otherwise the path of an existing one.
	NetNSPath string
	// IPCNSPath, PIDNSPath and UTSNSPath have NetNSPath's meaning for
	// the IPC, PID and UTS namespaces. A container that joins another's
	// UTS namespace (or the host's) sets no hostname of its own.
	IPCNSPath, PIDNSPath, UTSNSPath string
	// Shm is where /dev/shm comes from: "" a private 64 MiB tmpfs,
	// "none" nothing, otherwise a host directory bind-mounted (a
	// shareable container's tmpfs, or the host's /dev/shm).
	Shm string
	// ShmSize is the private /dev/shm's size in bytes (0: 64 MiB).
	ShmSize int64
	// RootfsPropagation is the OCI linux.rootfsPropagation ("" the
	// runtime's default); a shared or slave bind mount needs one as
	// shared.
	RootfsPropagation string
	// Mounts are appended after the defaults.
	Mounts            []specs.Mount
	CapAdd, CapDrop   []string
	Privileged        bool
	NoNewPrivileges   bool
	SeccompUnconfined bool
	Annotations       map[string]string
	OOMScoreAdj       *int
	Sysctls           map[string]string
	// Tmpfs maps a container path to mount options ("size=64m,mode=1777").
	Tmpfs map[string]string
}

// DefaultPath is the PATH given to containers whose image sets none.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// SpecVersion is the ociVersion written into specs. crun 1.8 rejects
// versions above 1.1 ("unknown version specified") although it implements
// every field berth uses; runc accepts it too.
const SpecVersion = "1.1.0"

// MinMemory is the smallest memory limit accepted (Docker's).
const MinMemory = 6 << 20

const defaultCPUPeriod = 100000

var maskedPaths = []string{
	"/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
	"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
	"/sys/firmware", "/sys/devices/virtual/powercap",
}

var readonlyPaths = []string{
	"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
}

func invalid(field, format string, a ...any) error {
	return fmt.Errorf("%s: %s: %w", field, fmt.Sprintf(format, a...), errdefs.ErrInvalidArgument)
}

func ptr[T any](v T) *T { return &v }

// Generate builds the OCI spec for o. It checks every field and returns one
// errdefs.ErrInvalidArgument error naming the first bad one.
func Generate(o SpecOpts) (*specs.Spec, error) {
	if o.ID == "" {
		return nil, invalid("container id", "must not be empty")
	}
	if !filepath.IsAbs(o.Rootfs) {
		return nil, invalid("rootfs", "%q must be an absolute path", o.Rootfs)
	}
	if len(o.Args) == 0 || o.Args[0] == "" {
		return nil, invalid("command", "no command given: the image has no Entrypoint or Cmd and none was specified")
	}
	cwd := o.Cwd
	if cwd == "" {
		cwd = "/"
	}
	if !filepath.IsAbs(cwd) {
		return nil, invalid("working directory", "%q must be an absolute path", o.Cwd)
	}
	caps, err := capabilities(o.Privileged, o.CapAdd, o.CapDrop)
	if err != nil {
		return nil, err
	}
	res, err := resources(o)
	if err != nil {
		return nil, err
	}
	var console *specs.Box
	if o.Terminal && o.ConsoleHeight > 0 && o.ConsoleWidth > 0 {
		console = &specs.Box{Height: o.ConsoleHeight, Width: o.ConsoleWidth}
	}
	s := &specs.Spec{
		Version:  SpecVersion,
		Root:     &specs.Root{Path: o.Rootfs, Readonly: o.ReadonlyRootfs},
		Hostname: o.Hostname,
		Process: &specs.Process{
			Terminal:    o.Terminal,
			ConsoleSize: console,
			Args:        append([]string(nil), o.Args...),
			Env:         env(o),
			Cwd:         cwd,
			User: specs.User{
				UID: o.UID, GID: o.GID,
				AdditionalGids: append([]uint32(nil), o.AdditionalGids...),
			},
			Capabilities: &specs.LinuxCapabilities{
				Bounding:  caps,
				Effective: caps,
				Permitted: caps,
			},
			NoNewPrivileges: o.NoNewPrivileges,
			OOMScoreAdj:     o.OOMScoreAdj,
		},
		Annotations: copyMap(o.Annotations),
		Linux: &specs.Linux{
			CgroupsPath: o.CgroupsPath,
			Resources:   res,
		},
	}
	if o.OOMScoreAdj != nil && (*o.OOMScoreAdj < -1000 || *o.OOMScoreAdj > 1000) {
		return nil, invalid("oom score adj", "%d is outside -1000..1000", *o.OOMScoreAdj)
	}
	ns := []specs.LinuxNamespace{{Type: specs.MountNamespace}, {Type: specs.CgroupNamespace}}
	for _, n := range []struct {
		typ  specs.LinuxNamespaceType
		path string
		what string
	}{
		{specs.PIDNamespace, o.PIDNSPath, "pid namespace"},
		{specs.IPCNamespace, o.IPCNSPath, "ipc namespace"},
		{specs.UTSNamespace, o.UTSNSPath, "uts namespace"},
		{specs.NetworkNamespace, o.NetNSPath, "network namespace"},
	} {
		switch n.path {
		case "":
			ns = append(ns, specs.LinuxNamespace{Type: n.typ})
		case "host":
			// No namespace of its own: the host's.
		default:
			if !filepath.IsAbs(n.path) {
				return nil, invalid(n.what, "%q must be \"\", \"host\" or an absolute path", n.path)
			}
			ns = append(ns, specs.LinuxNamespace{Type: n.typ, Path: n.path})
		}
	}
	s.Linux.Namespaces = ns
	if o.UTSNSPath != "" {
		// The hostname belongs to the namespace joined.
		s.Hostname = ""
	}
	switch o.RootfsPropagation {
	case "", "private", "rprivate", "shared", "rshared", "slave", "rslave", "unbindable", "runbindable":
		s.Linux.RootfsPropagation = o.RootfsPropagation
	default:
		return nil, invalid("rootfs propagation", "%q is not a propagation mode", o.RootfsPropagation)
	}

	sysctl, err := sysctls(o.Sysctls, o.NetNSPath == "host", o.IPCNSPath == "host")
	if err != nil {
		return nil, err
	}
	s.Linux.Sysctl = sysctl

	s.Mounts = defaultMounts(o.Privileged)
	switch o.Shm {
	case "":
		if o.ShmSize > 0 {
			for i, m := range s.Mounts {
				if m.Destination == "/dev/shm" {
					s.Mounts[i].Options = []string{"nosuid", "noexec", "nodev", "mode=1777", "size=" + strconv.FormatInt(o.ShmSize, 10)}
				}
			}
		}
	case "none":
		s.Mounts = slices.DeleteFunc(s.Mounts, func(m specs.Mount) bool { return m.Destination == "/dev/shm" })
	default:
		if !filepath.IsAbs(o.Shm) {
			return nil, invalid("shm", "%q must be \"\", \"none\" or an absolute path", o.Shm)
		}
		for i, m := range s.Mounts {
			if m.Destination == "/dev/shm" {
				s.Mounts[i] = specs.Mount{Destination: "/dev/shm", Type: "bind", Source: o.Shm, Options: []string{"rbind", "rprivate", "nosuid", "noexec", "nodev"}}
			}
		}
	}
	tm, err := tmpfsMounts(o.Tmpfs)
	if err != nil {
		return nil, err
	}
	s.Mounts = append(s.Mounts, tm...)
	for _, m := range o.Mounts {
		if !filepath.IsAbs(m.Destination) {
			return nil, invalid("mount", "destination %q must be an absolute path", m.Destination)
		}
		s.Mounts = append(s.Mounts, m)
	}

	if o.Privileged {
		s.Linux.Resources.Devices = []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}}
		s.Linux.Devices = hostDevices()
	} else {
		s.Linux.MaskedPaths = append([]string(nil), maskedPaths...)
		s.Linux.ReadonlyPaths = append([]string(nil), readonlyPaths...)
		s.Linux.Resources.Devices = defaultDeviceRules()
		if !o.SeccompUnconfined {
			s.Linux.Seccomp = DefaultSeccomp(caps)
		}
	}
	return s, nil
}

func copyMap(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// env adds PATH, HOSTNAME and (with a terminal) TERM when absent, as Docker's
// daemon does.
func env(o SpecOpts) []string {
	out := append([]string(nil), o.Env...)
	has := func(k string) bool {
		for _, e := range out {
			if strings.HasPrefix(e, k+"=") {
				return true
			}
		}
		return false
	}
	if !has("PATH") {
		out = append([]string{"PATH=" + DefaultPath}, out...)
	}
	if o.Hostname != "" && !has("HOSTNAME") {
		out = append(out, "HOSTNAME="+o.Hostname)
	}
	if o.Terminal && !has("TERM") {
		out = append(out, "TERM=xterm")
	}
	return out
}

func defaultMounts(privileged bool) []specs.Mount {
	sysOpts := []string{"nosuid", "noexec", "nodev", "ro"}
	cgOpts := []string{"nosuid", "noexec", "nodev", "relatime", "ro"}
	if privileged {
		sysOpts = []string{"nosuid", "noexec", "nodev", "rw"}
		cgOpts = []string{"nosuid", "noexec", "nodev", "relatime", "rw"}
	}
	return []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: sysOpts},
		{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: cgOpts},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=67108864"}},
	}
}

// defaultDeviceRules is Docker's devices cgroup allowlist. The runtimes
// create /dev/null, zero, full, random, urandom, tty and ptmx themselves.
func defaultDeviceRules() []specs.LinuxDeviceCgroup {
	c := func(major, minor int64, access string) specs.LinuxDeviceCgroup {
		r := specs.LinuxDeviceCgroup{Allow: true, Type: "c", Access: access}
		if major >= 0 {
			r.Major = ptr(major)
		}
		if minor >= 0 {
			r.Minor = ptr(minor)
		}
		return r
	}
	return []specs.LinuxDeviceCgroup{
		{Allow: false, Access: "rwm"},
		c(-1, -1, "m"), // mknod of any char device (not use)
		{Allow: true, Type: "b", Access: "m"},
		c(1, 3, "rwm"),    // null
		c(1, 5, "rwm"),    // zero
		c(1, 7, "rwm"),    // full
		c(1, 8, "rwm"),    // random
		c(1, 9, "rwm"),    // urandom
		c(5, 0, "rwm"),    // tty
		c(5, 1, "rwm"),    // console
		c(5, 2, "rwm"),    // ptmx
		c(136, -1, "rwm"), // pts
		c(10, 200, "rwm"), // tun
	}
}

func tmpfsMounts(m map[string]string) ([]specs.Mount, error) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []specs.Mount
	for _, dst := range keys {
		if !filepath.IsAbs(dst) || filepath.Clean(dst) == "/" {
			return nil, invalid("tmpfs", "destination %q must be an absolute path other than /", dst)
		}
		opts := []string{"nosuid", "nodev", "noexec"}
		if v := m[dst]; v != "" {
			for _, o := range strings.Split(v, ",") {
				if o = strings.TrimSpace(o); o == "" {
					continue
				}
				if k, val, ok := strings.Cut(o, "="); ok {
					switch k {
					case "size", "mode", "uid", "gid", "nr_inodes", "nr_blocks":
					default:
						return nil, invalid("tmpfs", "%s: option %q is not a tmpfs option", dst, o)
					}
					if val == "" {
						return nil, invalid("tmpfs", "%s: option %q has no value", dst, o)
					}
				}
				opts = append(opts, o)
			}
		}
		out = append(out, specs.Mount{Destination: filepath.Clean(dst), Type: "tmpfs", Source: "tmpfs", Options: opts})
	}
	return out, nil
}

// sysctls accepts the namespaced sysctls Docker accepts.
func sysctls(m map[string]string, hostNet, hostIPC bool) (map[string]string, error) {
	if len(m) == 0 {
		return nil, nil
	}
	ipc := map[string]bool{"kernel.msgmax": true, "kernel.msgmnb": true, "kernel.msgmni": true,
		"kernel.sem": true, "kernel.shmall": true, "kernel.shmmax": true, "kernel.shmmni": true,
		"kernel.shm_rmid_forced": true}
	out := map[string]string{}
	for k, v := range m {
		switch {
		case ipc[k], strings.HasPrefix(k, "fs.mqueue."):
			if hostIPC {
				return nil, invalid("sysctl", "%q cannot be set with the host's IPC namespace", k)
			}
		case strings.HasPrefix(k, "net."):
			if hostNet {
				return nil, invalid("sysctl", "%q cannot be set with the host's network namespace", k)
			}
		default:
			return nil, invalid("sysctl", "%q is not namespaced: want kernel.msg*, kernel.sem, kernel.shm*, fs.mqueue.* or net.*", k)
		}
		out[k] = v
	}
	return out, nil
}

// Resources returns the cgroup limits of o (only its resource fields are
// read), checked as Generate checks them: what `update` gives the runtime.
func Resources(o SpecOpts) (*specs.LinuxResources, error) { return resources(o) }

func resources(o SpecOpts) (*specs.LinuxResources, error) {
	r := &specs.LinuxResources{}
	if o.Memory < 0 {
		return nil, invalid("memory", "%d must not be negative", o.Memory)
	}
	if o.Memory > 0 && o.Memory < MinMemory {
		return nil, invalid("memory", "%d bytes is below the minimum of 6MB", o.Memory)
	}
	if o.MemorySwap < -1 {
		return nil, invalid("memory-swap", "%d must be -1 (unlimited), 0 or a byte count", o.MemorySwap)
	}
	if o.MemorySwap > 0 && o.Memory == 0 {
		return nil, invalid("memory-swap", "set --memory as well: the swap limit counts memory+swap")
	}
	if o.MemorySwap > 0 && o.MemorySwap < o.Memory {
		return nil, invalid("memory-swap", "%d must be at least the memory limit %d (it counts memory+swap)", o.MemorySwap, o.Memory)
	}
	if o.MemoryReservation < 0 || (o.Memory > 0 && o.MemoryReservation > o.Memory) {
		return nil, invalid("memory-reservation", "%d must be between 0 and the memory limit", o.MemoryReservation)
	}
	if o.Memory > 0 || o.MemoryReservation > 0 {
		m := &specs.LinuxMemory{}
		if o.Memory > 0 {
			m.Limit = ptr(o.Memory)
			switch {
			case o.MemorySwap == -1:
				m.Swap = ptr(int64(-1))
			case o.MemorySwap > 0:
				m.Swap = ptr(o.MemorySwap)
			default:
				// Docker: swap defaults to as much as memory. Expressed as
				// memory+swap (v1 memsw); runtimes write swap.max =
				// swap-memory on v2.
				m.Swap = ptr(2 * o.Memory)
			}
		}
		if o.MemoryReservation > 0 {
			m.Reservation = ptr(o.MemoryReservation)
		}
		r.Memory = m
	}
	if o.NanoCPUs < 0 || o.CPUQuota < 0 || o.CPUPeriod < 0 || o.CPUShares < 0 {
		return nil, invalid("cpus", "limits must not be negative")
	}
	if o.NanoCPUs > 0 && (o.CPUQuota > 0 || o.CPUPeriod > 0) {
		return nil, invalid("cpus", "--cpus cannot be combined with --cpu-quota or --cpu-period")
	}
	if o.CPUPeriod != 0 && (o.CPUPeriod < 1000 || o.CPUPeriod > 1000000) {
		return nil, invalid("cpu-period", "%d must be between 1000 and 1000000 microseconds", o.CPUPeriod)
	}
	if o.CPUQuota != 0 && o.CPUQuota < 1000 {
		return nil, invalid("cpu-quota", "%d must be at least 1000 microseconds", o.CPUQuota)
	}
	cpu := &specs.LinuxCPU{}
	used := false
	if o.NanoCPUs > 0 {
		q := o.NanoCPUs * defaultCPUPeriod / 1e9
		if q < 1000 {
			return nil, invalid("cpus", "%.3f is below the minimum of 0.01", float64(o.NanoCPUs)/1e9)
		}
		cpu.Quota, cpu.Period, used = ptr(q), ptr(uint64(defaultCPUPeriod)), true
	}
	if o.CPUQuota > 0 {
		cpu.Quota, used = ptr(o.CPUQuota), true
		p := o.CPUPeriod
		if p == 0 {
			p = defaultCPUPeriod
		}
		cpu.Period = ptr(uint64(p))
	} else if o.CPUPeriod > 0 {
		cpu.Period, used = ptr(uint64(o.CPUPeriod)), true
	}
	if o.CPUShares > 0 {
		// Kernel range for v1 cpu.shares; runtimes map it to cpu.weight
		// (1..10000) on v2.
		s := min(max(o.CPUShares, 2), 262144)
		cpu.Shares, used = ptr(uint64(s)), true
	}
	if o.CpusetCpus != "" {
		if err := checkCpuset(o.CpusetCpus); err != nil {
			return nil, err
		}
		cpu.Cpus, used = o.CpusetCpus, true
	}
	if used {
		r.CPU = cpu
	}
	switch {
	case o.PidsLimit < -1:
		return nil, invalid("pids-limit", "%d must be -1 (unlimited), 0 (unset) or positive", o.PidsLimit)
	case o.PidsLimit != 0:
		r.Pids = &specs.LinuxPids{Limit: ptr(o.PidsLimit)}
	}
	if o.BlkioWeight != 0 {
		if o.BlkioWeight < 10 || o.BlkioWeight > 1000 {
			return nil, invalid("blkio-weight", "%d must be between 10 and 1000", o.BlkioWeight)
		}
		r.BlockIO = &specs.LinuxBlockIO{Weight: ptr(o.BlkioWeight)}
	}
	return r, nil
}

// checkCpuset validates "0-2,4" style lists.
func checkCpuset(s string) error {
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err1 := strconv.ParseUint(lo, 10, 16)
		b := a
		var err2 error
		if isRange {
			b, err2 = strconv.ParseUint(hi, 10, 16)
		}
		if err1 != nil || err2 != nil || b < a {
			return invalid("cpuset-cpus", "%q is not a CPU list like 0-2,4", s)
		}
	}
	return nil
}

// hostDevices lists the host's top-level /dev character and block devices
// for privileged containers.
func hostDevices() []specs.LinuxDevice {
	entries, err := os.ReadDir("/dev")
	if err != nil {
		return nil
	}
	var out []specs.LinuxDevice
	for _, e := range entries {
		if d, ok := deviceInfo(filepath.Join("/dev", e.Name())); ok {
			out = append(out, d)
		}
	}
	return out
}
