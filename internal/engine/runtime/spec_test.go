package runtime

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/berth/berth/internal/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func init() {
	// Tests must not depend on the host's bounding set: pretend all but
	// CAP_SYS_RESOURCE (as on the host that shaped this code).
	hostCapBound = func() uint64 { return ((1 << 41) - 1) &^ (1 << 24) }
}

func base() SpecOpts {
	return SpecOpts{ID: "c1", Rootfs: "/var/lib/berth/c1/rootfs", Args: []string{"/bin/sh"}, NoNewPrivileges: true, CgroupsPath: "/berth/c1"}
}

func gen(t *testing.T, mod func(*SpecOpts)) *specs.Spec {
	t.Helper()
	o := base()
	if mod != nil {
		mod(&o)
	}
	s, err := Generate(o)
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	// Round-trips as JSON, as it is written to config.json.
	if _, err := json.Marshal(s); err != nil {
		t.Fatalf("marshal: %v", err)
	}
	return s
}

func TestDefaultsLikeDocker(t *testing.T) {
	s := gen(t, nil)
	var ns []specs.LinuxNamespaceType
	for _, n := range s.Linux.Namespaces {
		if n.Path != "" {
			t.Errorf("namespace %s joins %q, want a new one", n.Type, n.Path)
		}
		ns = append(ns, n.Type)
	}
	for _, want := range []specs.LinuxNamespaceType{specs.PIDNamespace, specs.MountNamespace, specs.UTSNamespace, specs.IPCNamespace, specs.CgroupNamespace, specs.NetworkNamespace} {
		if !slices.Contains(ns, want) {
			t.Errorf("namespaces %v lack %s", ns, want)
		}
	}
	if slices.Contains(ns, specs.UserNamespace) {
		t.Errorf("namespaces %v include user, want none by default", ns)
	}
	caps := s.Process.Capabilities
	want := append([]string(nil), DefaultCaps...)
	slices.Sort(want)
	for name, got := range map[string][]string{"bounding": caps.Bounding, "effective": caps.Effective, "permitted": caps.Permitted} {
		if !slices.Equal(got, want) {
			t.Errorf("%s caps %v, want %v", name, got, want)
		}
	}
	if len(caps.Inheritable) != 0 || len(caps.Ambient) != 0 {
		t.Errorf("inheritable %v ambient %v, want none", caps.Inheritable, caps.Ambient)
	}
	if !s.Process.NoNewPrivileges {
		t.Error("NoNewPrivileges false, want true")
	}
	if s.Linux.Seccomp == nil || s.Linux.Seccomp.DefaultAction != specs.ActErrno {
		t.Errorf("seccomp %v, want default-deny profile", s.Linux.Seccomp)
	}
	if !slices.Equal(s.Linux.MaskedPaths, maskedPaths) || !slices.Equal(s.Linux.ReadonlyPaths, readonlyPaths) {
		t.Errorf("masked %v readonly %v, want Docker's lists", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths)
	}
	mounts := map[string]specs.Mount{}
	for _, m := range s.Mounts {
		mounts[m.Destination] = m
	}
	for _, d := range []string{"/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/sys/fs/cgroup"} {
		if _, ok := mounts[d]; !ok {
			t.Errorf("no %s mount", d)
		}
	}
	if !slices.Contains(mounts["/sys"].Options, "ro") {
		t.Errorf("/sys options %v, want ro", mounts["/sys"].Options)
	}
	if !slices.Contains(mounts["/dev/shm"].Options, "size=67108864") {
		t.Errorf("/dev/shm options %v, want size=64m", mounts["/dev/shm"].Options)
	}
	dev := s.Linux.Resources.Devices
	if len(dev) == 0 || dev[0].Allow || dev[0].Access != "rwm" {
		t.Fatalf("device rules %v, want deny-all first", dev)
	}
	allowed := func(major, minor int64) bool {
		for _, d := range dev[1:] {
			if d.Allow && d.Type == "c" && strings.Contains(d.Access, "r") &&
				(d.Major == nil || *d.Major == major) && (d.Minor == nil || *d.Minor == minor) {
				return true
			}
		}
		return false
	}
	for _, d := range [][2]int64{{1, 3}, {1, 5}, {1, 7}, {1, 8}, {1, 9}, {5, 0}, {5, 2}, {136, 4}} {
		if !allowed(d[0], d[1]) {
			t.Errorf("device %d:%d not allowed, want it in the allowlist", d[0], d[1])
		}
	}
	if allowed(8, 0) { // sda
		t.Error("block device 8:0 readable, want denied")
	}
	if s.Process.Env[0] != "PATH="+DefaultPath {
		t.Errorf("env %v, want default PATH first", s.Process.Env)
	}
	if s.Process.Cwd != "/" {
		t.Errorf("cwd %q, want /", s.Process.Cwd)
	}
}

func TestPrivilegedLiftsHardening(t *testing.T) {
	s := gen(t, func(o *SpecOpts) { o.Privileged = true })
	if s.Linux.Seccomp != nil || len(s.Linux.MaskedPaths) != 0 || len(s.Linux.ReadonlyPaths) != 0 {
		t.Errorf("privileged: seccomp %v masked %v readonly %v, want none", s.Linux.Seccomp != nil, s.Linux.MaskedPaths, s.Linux.ReadonlyPaths)
	}
	if d := s.Linux.Resources.Devices; len(d) != 1 || !d[0].Allow {
		t.Errorf("privileged device rules %v, want allow all", d)
	}
	if slices.Contains(s.Process.Capabilities.Bounding, "CAP_SYS_RESOURCE") {
		t.Error("privileged got CAP_SYS_RESOURCE, which the host bounding set lacks")
	}
	if !slices.Contains(s.Process.Capabilities.Bounding, "CAP_SYS_ADMIN") {
		t.Error("privileged lacks CAP_SYS_ADMIN")
	}
	for _, m := range s.Mounts {
		if m.Destination == "/sys" && slices.Contains(m.Options, "ro") {
			t.Error("privileged /sys is read-only, want rw")
		}
	}
}

func TestCapAddDrop(t *testing.T) {
	tests := []struct {
		add, drop []string
		has       []string
		lacks     []string
		wantErr   bool
	}{
		{add: []string{"net_admin"}, has: []string{"CAP_NET_ADMIN", "CAP_CHOWN"}},
		{drop: []string{"CAP_CHOWN", "net_raw"}, lacks: []string{"CAP_CHOWN", "CAP_NET_RAW"}, has: []string{"CAP_KILL"}},
		{drop: []string{"ALL"}, add: []string{"KILL"}, has: []string{"CAP_KILL"}, lacks: []string{"CAP_CHOWN"}},
		{add: []string{"ALL"}, has: []string{"CAP_SYS_ADMIN"}, lacks: []string{"CAP_SYS_RESOURCE"}},
		{add: []string{"SYS_RESOURCE"}, wantErr: true},
		{add: []string{"NOT_A_CAP"}, wantErr: true},
	}
	for _, tt := range tests {
		o := base()
		o.CapAdd, o.CapDrop = tt.add, tt.drop
		s, err := Generate(o)
		if tt.wantErr {
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Errorf("add %v drop %v: got %v, want ErrInvalidArgument", tt.add, tt.drop, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("add %v drop %v: %v", tt.add, tt.drop, err)
			continue
		}
		for _, c := range tt.has {
			if !slices.Contains(s.Process.Capabilities.Effective, c) {
				t.Errorf("add %v drop %v: lacks %s", tt.add, tt.drop, c)
			}
		}
		for _, c := range tt.lacks {
			if slices.Contains(s.Process.Capabilities.Bounding, c) {
				t.Errorf("add %v drop %v: has %s", tt.add, tt.drop, c)
			}
		}
	}
}

func TestResourcesV1AndV2(t *testing.T) {
	for _, v2 := range []bool{false, true} {
		s := gen(t, func(o *SpecOpts) {
			o.CgroupV2 = v2
			o.Memory = 64 << 20
			o.MemoryReservation = 32 << 20
			o.NanoCPUs = 1500000000
			o.CPUShares = 512
			o.PidsLimit = 100
			o.BlkioWeight = 300
			o.CpusetCpus = "0-1"
		})
		r := s.Linux.Resources
		if *r.Memory.Limit != 64<<20 || *r.Memory.Reservation != 32<<20 {
			t.Errorf("v2=%v memory %+v, want limit 64M reservation 32M", v2, r.Memory)
		}
		// Docker default: swap as large as memory, written as memory+swap.
		// v1 memsw = 128M; v2 runtimes write swap.max = 128M-64M = 64M,
		// so the same value is valid for both.
		if *r.Memory.Swap != 128<<20 {
			t.Errorf("v2=%v swap %d, want 128M (memory+swap)", v2, *r.Memory.Swap)
		}
		if r.Memory.Swappiness != nil || r.Memory.Kernel != nil {
			t.Errorf("v2=%v: swappiness/kernel memory set; they do not exist on v2", v2)
		}
		if *r.CPU.Quota != 150000 || *r.CPU.Period != 100000 {
			t.Errorf("v2=%v cpu quota/period %d/%d, want 150000/100000", v2, *r.CPU.Quota, *r.CPU.Period)
		}
		if *r.CPU.Shares != 512 || r.CPU.Cpus != "0-1" {
			t.Errorf("v2=%v shares %d cpus %q", v2, *r.CPU.Shares, r.CPU.Cpus)
		}
		if *r.Pids.Limit != 100 || *r.BlockIO.Weight != 300 {
			t.Errorf("v2=%v pids %d blkio %d", v2, *r.Pids.Limit, *r.BlockIO.Weight)
		}
	}
	s := gen(t, func(o *SpecOpts) { o.Memory = 64 << 20; o.MemorySwap = -1 })
	if *s.Linux.Resources.Memory.Swap != -1 {
		t.Errorf("--memory-swap -1: swap %d, want -1", *s.Linux.Resources.Memory.Swap)
	}
	s = gen(t, func(o *SpecOpts) { o.Memory = 64 << 20; o.MemorySwap = 64 << 20 })
	if *s.Linux.Resources.Memory.Swap != 64<<20 {
		t.Errorf("--memory-swap = memory: swap %d, want 64M (no swap)", *s.Linux.Resources.Memory.Swap)
	}
	s = gen(t, nil)
	if r := s.Linux.Resources; r.Memory != nil || r.CPU != nil || r.Pids != nil || r.BlockIO != nil {
		t.Errorf("no limits asked, got %+v", r)
	}
}

func TestBadInput(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*SpecOpts)
		want string // words the error must contain
	}{
		{"no command", func(o *SpecOpts) { o.Args = nil }, "command"},
		{"relative rootfs", func(o *SpecOpts) { o.Rootfs = "rootfs" }, "rootfs"},
		{"relative cwd", func(o *SpecOpts) { o.Cwd = "tmp" }, "working directory"},
		{"tiny memory", func(o *SpecOpts) { o.Memory = 1024 }, "memory"},
		{"swap below memory", func(o *SpecOpts) { o.Memory = 64 << 20; o.MemorySwap = 32 << 20 }, "memory-swap"},
		{"swap without memory", func(o *SpecOpts) { o.MemorySwap = 64 << 20 }, "memory-swap"},
		{"reservation above limit", func(o *SpecOpts) { o.Memory = 64 << 20; o.MemoryReservation = 128 << 20 }, "memory-reservation"},
		{"cpus and quota", func(o *SpecOpts) { o.NanoCPUs = 1e9; o.CPUQuota = 50000 }, "cpus"},
		{"tiny cpus", func(o *SpecOpts) { o.NanoCPUs = 1000 }, "cpus"},
		{"bad cpuset", func(o *SpecOpts) { o.CpusetCpus = "3-1" }, "cpuset"},
		{"pids", func(o *SpecOpts) { o.PidsLimit = -5 }, "pids-limit"},
		{"blkio", func(o *SpecOpts) { o.BlkioWeight = 5 }, "blkio-weight"},
		{"sysctl", func(o *SpecOpts) { o.Sysctls = map[string]string{"vm.swappiness": "1"} }, "vm.swappiness"},
		{"net sysctl with host net", func(o *SpecOpts) { o.NetNSPath = "host"; o.Sysctls = map[string]string{"net.ipv4.ip_forward": "1"} }, "net.ipv4.ip_forward"},
		{"tmpfs option", func(o *SpecOpts) { o.Tmpfs = map[string]string{"/run": "bogus=1"} }, "bogus"},
		{"tmpfs root", func(o *SpecOpts) { o.Tmpfs = map[string]string{"/": ""} }, "tmpfs"},
		{"oom score", func(o *SpecOpts) { v := 5000; o.OOMScoreAdj = &v }, "oom"},
		{"netns path", func(o *SpecOpts) { o.NetNSPath = "ns1" }, "network namespace"},
	}
	for _, tt := range tests {
		o := base()
		tt.mod(&o)
		_, err := Generate(o)
		if !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%s: got %v, want ErrInvalidArgument", tt.name, err)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %q does not name %q", tt.name, err, tt.want)
		}
	}
}

func TestNetworkAndExtras(t *testing.T) {
	hasNet := func(s *specs.Spec) (bool, string) {
		for _, n := range s.Linux.Namespaces {
			if n.Type == specs.NetworkNamespace {
				return true, n.Path
			}
		}
		return false, ""
	}
	if ok, _ := hasNet(gen(t, func(o *SpecOpts) { o.NetNSPath = "host" })); ok {
		t.Error("host network: got a network namespace")
	}
	if ok, p := hasNet(gen(t, func(o *SpecOpts) { o.NetNSPath = "/run/netns/x" })); !ok || p != "/run/netns/x" {
		t.Errorf("netns path: got %v %q", ok, p)
	}
	s := gen(t, func(o *SpecOpts) {
		o.Tmpfs = map[string]string{"/run": "size=1m,mode=755"}
		o.Mounts = []specs.Mount{{Destination: "/data", Type: "bind", Source: "/srv", Options: []string{"rbind"}}}
		o.Terminal, o.Hostname = true, "web"
		o.ConsoleHeight, o.ConsoleWidth = 24, 80
		o.Sysctls = map[string]string{"net.ipv4.ip_forward": "1"}
	})
	n := len(s.Mounts)
	if s.Mounts[n-1].Destination != "/data" || s.Mounts[n-2].Destination != "/run" || !slices.Contains(s.Mounts[n-2].Options, "size=1m") {
		t.Errorf("last mounts %+v, want /run tmpfs then /data", s.Mounts[n-2:])
	}
	if cs := s.Process.ConsoleSize; cs == nil || cs.Height != 24 || cs.Width != 80 {
		t.Errorf("console size %+v, want 24x80", cs)
	}
	if !slices.Contains(s.Process.Env, "TERM=xterm") || !slices.Contains(s.Process.Env, "HOSTNAME=web") {
		t.Errorf("env %v, want TERM and HOSTNAME", s.Process.Env)
	}
}

func TestSharedNamespaces(t *testing.T) {
	nsOf := func(s *specs.Spec) map[specs.LinuxNamespaceType]string {
		m := map[specs.LinuxNamespaceType]string{}
		for _, n := range s.Linux.Namespaces {
			m[n.Type] = "new"
			if n.Path != "" {
				m[n.Type] = n.Path
			}
		}
		return m
	}
	shm := func(s *specs.Spec) *specs.Mount {
		for i, m := range s.Mounts {
			if m.Destination == "/dev/shm" {
				return &s.Mounts[i]
			}
		}
		return nil
	}
	// A pod container: the sandbox's network, UTS, IPC and PID namespaces.
	s := gen(t, func(o *SpecOpts) {
		o.Hostname = "web"
		o.NetNSPath, o.UTSNSPath, o.IPCNSPath, o.PIDNSPath = "/proc/9/ns/net", "/proc/9/ns/uts", "/proc/9/ns/ipc", "/proc/9/ns/pid"
		o.Shm = "/var/lib/berth/containers/x/shm"
	})
	ns := nsOf(s)
	want := map[specs.LinuxNamespaceType]string{specs.NetworkNamespace: "/proc/9/ns/net", specs.UTSNamespace: "/proc/9/ns/uts",
		specs.IPCNamespace: "/proc/9/ns/ipc", specs.PIDNamespace: "/proc/9/ns/pid", specs.MountNamespace: "new", specs.CgroupNamespace: "new"}
	for k, v := range want {
		if ns[k] != v {
			t.Errorf("namespace %s: %q, want %q", k, ns[k], v)
		}
	}
	if s.Hostname != "" {
		t.Errorf("hostname %q set in a joined UTS namespace", s.Hostname)
	}
	if m := shm(s); m == nil || m.Type != "bind" || m.Source != "/var/lib/berth/containers/x/shm" {
		t.Errorf("/dev/shm %+v, want a bind of the shared one", m)
	}
	// Host modes drop the namespaces.
	ns = nsOf(gen(t, func(o *SpecOpts) { o.IPCNSPath, o.PIDNSPath, o.UTSNSPath = "host", "host", "host" }))
	for _, k := range []specs.LinuxNamespaceType{specs.IPCNamespace, specs.PIDNamespace, specs.UTSNamespace} {
		if _, ok := ns[k]; ok {
			t.Errorf("host mode kept a %s namespace", k)
		}
	}
	if shm(gen(t, func(o *SpecOpts) { o.Shm = "none" })) != nil {
		t.Error("Shm none kept /dev/shm")
	}
	if m := shm(gen(t, func(o *SpecOpts) { o.ShmSize = 1 << 20 })); m == nil || !slices.Contains(m.Options, "size=1048576") {
		t.Errorf("ShmSize 1 MiB: %+v", m)
	}
	if s := gen(t, func(o *SpecOpts) { o.RootfsPropagation = "rshared" }); s.Linux.RootfsPropagation != "rshared" {
		t.Errorf("rootfs propagation %q", s.Linux.RootfsPropagation)
	}
	for _, bad := range []func(*SpecOpts){
		func(o *SpecOpts) { o.PIDNSPath = "proc/1/ns/pid" },
		func(o *SpecOpts) { o.Shm = "relative" },
		func(o *SpecOpts) { o.RootfsPropagation = "sideways" },
		func(o *SpecOpts) { o.IPCNSPath = "host"; o.Sysctls = map[string]string{"kernel.shmmax": "1"} },
	} {
		o := base()
		bad(&o)
		if _, err := Generate(o); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("Generate(%+v): %v, want an invalid-argument error", o, err)
		}
	}
}
