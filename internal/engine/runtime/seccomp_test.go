package runtime

import (
	goruntime "runtime"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// eval applies a profile to one syscall the way libseccomp does for these
// rule shapes: a rule matches when all its argument conditions hold; the
// action of a matching rule wins over the default.
func eval(p *specs.LinuxSeccomp, name string, args ...uint64) specs.LinuxSeccompAction {
	for _, r := range p.Syscalls {
		named := false
		for _, n := range r.Names {
			if n == name {
				named = true
			}
		}
		if !named {
			continue
		}
		ok := true
		for _, a := range r.Args {
			var v uint64
			if int(a.Index) < len(args) {
				v = args[a.Index]
			}
			switch a.Op {
			case specs.OpEqualTo:
				ok = ok && v == a.Value
			case specs.OpNotEqual:
				ok = ok && v != a.Value
			case specs.OpMaskedEqual:
				ok = ok && v&a.Value == a.ValueTwo
			default:
				ok = false
			}
		}
		if ok {
			return r.Action
		}
	}
	return p.DefaultAction
}

func TestSeccompProfile(t *testing.T) {
	const (
		cloneNewNS  = 0x00020000
		cloneNewNet = 0x40000000
		cloneNewPID = 0x20000000
		cloneNewUsr = 0x10000000
		threadFlags = 0x003d0f00 // CLONE_VM|FS|FILES|SIGHAND|THREAD|SYSVSEM|SETTLS|PARENT_SETTID|CHILD_CLEARTID
		sigchld     = 17
	)
	def := DefaultSeccomp(DefaultCaps)
	admin := DefaultSeccomp(append(append([]string(nil), DefaultCaps...), "CAP_SYS_ADMIN", "CAP_SYS_PTRACE"))
	allow, deny := specs.ActAllow, specs.ActErrno
	tests := []struct {
		name    string
		profile *specs.LinuxSeccomp
		syscall string
		args    []uint64
		want    specs.LinuxSeccompAction
	}{
		{"read", def, "read", nil, allow},
		{"execve", def, "execve", nil, allow},
		{"fork via clone", def, "clone", []uint64{sigchld}, allow},
		{"thread via clone", def, "clone", []uint64{threadFlags}, allow},
		{"clone new netns", def, "clone", []uint64{cloneNewNet | sigchld}, deny},
		{"clone new pidns", def, "clone", []uint64{cloneNewPID}, deny},
		{"clone new mountns", def, "clone", []uint64{cloneNewNS}, deny},
		{"clone new userns", def, "clone", []uint64{cloneNewUsr}, deny},
		{"clone3 falls back", def, "clone3", nil, deny},
		{"unshare", def, "unshare", []uint64{cloneNewNet}, deny},
		{"setns", def, "setns", nil, deny},
		{"mount", def, "mount", nil, deny},
		{"umount2", def, "umount2", nil, deny},
		{"keyctl", def, "keyctl", nil, deny},
		{"add_key", def, "add_key", nil, deny},
		{"request_key", def, "request_key", nil, deny},
		{"bpf", def, "bpf", nil, deny},
		{"ptrace", def, "ptrace", nil, deny},
		{"process_vm_readv", def, "process_vm_readv", nil, deny},
		{"kexec_load", def, "kexec_load", nil, deny},
		{"init_module", def, "init_module", nil, deny},
		{"reboot", def, "reboot", nil, deny},
		{"open_by_handle_at", def, "open_by_handle_at", nil, deny},
		{"userfaultfd", def, "userfaultfd", nil, deny},
		{"perf_event_open", def, "perf_event_open", nil, deny},
		{"chroot with SYS_CHROOT", def, "chroot", nil, allow},
		{"personality linux", def, "personality", []uint64{0}, allow},
		{"personality query", def, "personality", []uint64{0xffffffff}, allow},
		{"personality other", def, "personality", []uint64{0x0040000}, deny},
		{"socket inet", def, "socket", []uint64{2}, allow},
		{"socket vsock", def, "socket", []uint64{afVsock}, deny},
		{"admin mount", admin, "mount", nil, allow},
		{"admin unshare", admin, "unshare", nil, allow},
		{"admin clone netns", admin, "clone", []uint64{cloneNewNet}, allow},
		{"ptrace cap", admin, "ptrace", nil, allow},
	}
	for _, tt := range tests {
		if got := eval(tt.profile, tt.syscall, tt.args...); got != tt.want {
			t.Errorf("%s: %s%v -> %s, want %s", tt.name, tt.syscall, tt.args, got, tt.want)
		}
	}
	if def.DefaultErrnoRet == nil || *def.DefaultErrnoRet != 1 {
		t.Errorf("default errno %v, want EPERM (1)", def.DefaultErrnoRet)
	}
	arches := map[specs.Arch]bool{}
	for _, a := range def.Architectures {
		arches[a] = true
	}
	if len(def.Architectures) == 0 || (goruntime.GOARCH == "amd64" && (!arches[specs.ArchX86_64] || !arches[specs.ArchX86] || arches[specs.ArchAARCH64])) {
		t.Errorf("architectures %v: want this host's native and compat ABIs only", def.Architectures)
	}
	// clone3 answers ENOSYS so libc falls back to (filtered) clone.
	for _, r := range def.Syscalls {
		if len(r.Names) == 1 && r.Names[0] == "clone3" && (r.ErrnoRet == nil || *r.ErrnoRet != 38) {
			t.Errorf("clone3 errno %v, want ENOSYS (38)", r.ErrnoRet)
		}
	}
}
