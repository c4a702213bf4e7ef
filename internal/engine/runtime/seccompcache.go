package runtime

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"sync"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// crunBPFAnnotation makes crun load a ready BPF program instead of building
// one from linux.seccomp with libseccomp (which costs tens of milliseconds
// per container start for a Docker-sized profile).
const crunBPFAnnotation = "run.oci.seccomp_bpf_data"

// SeccompCache keeps the BPF programs crun compiled from berth's seccomp
// profiles, keyed by the profile, so that later containers with the same
// profile skip the compilation. crun leaves the program it built in its
// state directory as seccomp.bpf; Learn copies it from there. The spec
// keeps its linux.seccomp section, so runc and other runtimes, which ignore
// the annotation, still apply the same profile.
type SeccompCache struct {
	dir string
	mu  sync.Mutex
	mem map[string][]byte
}

// NewSeccompCache keeps programs in dir (created on first use).
func NewSeccompCache(dir string) *SeccompCache {
	return &SeccompCache{dir: dir, mem: map[string][]byte{}}
}

func profileKey(p *specs.LinuxSeccomp) string {
	b, _ := json.Marshal(p)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func (c *SeccompCache) get(key string) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	if b, ok := c.mem[key]; ok {
		return b
	}
	b, err := os.ReadFile(filepath.Join(c.dir, key+".bpf"))
	if err != nil || !validBPF(b) {
		return nil
	}
	c.mem[key] = b
	return b
}

// validBPF checks the shape of a classic BPF program: whole 8-byte
// instructions, at most the kernel's 4096.
func validBPF(b []byte) bool { return len(b) > 0 && len(b)%8 == 0 && len(b)/8 <= 4096 }

// Annotate adds the cached program for s's profile when the runtime is
// crun. It reports whether it did.
func (c *SeccompCache) Annotate(rt *Runtime, s *specs.Spec) bool {
	if c == nil || rt.Name != "crun" || s.Linux == nil || s.Linux.Seccomp == nil {
		return false
	}
	b := c.get(profileKey(s.Linux.Seccomp))
	if b == nil {
		return false
	}
	if s.Annotations == nil {
		s.Annotations = map[string]string{}
	}
	s.Annotations[crunBPFAnnotation] = base64.StdEncoding.EncodeToString(b)
	return true
}

// Learn stores the program crun compiled for container id, if crun still
// has it (a container that already exited may be gone; a later start
// learns it then).
func (c *SeccompCache) Learn(rt *Runtime, id string, s *specs.Spec) {
	if c == nil || rt.Name != "crun" || s.Linux == nil || s.Linux.Seccomp == nil {
		return
	}
	if _, ok := s.Annotations[crunBPFAnnotation]; ok {
		return
	}
	key := profileKey(s.Linux.Seccomp)
	if c.get(key) != nil {
		return
	}
	b, err := os.ReadFile(filepath.Join(rt.Root, id, "seccomp.bpf"))
	if err != nil || !validBPF(b) {
		return
	}
	if os.MkdirAll(c.dir, 0o700) != nil {
		return
	}
	tmp := filepath.Join(c.dir, key+".tmp")
	if os.WriteFile(tmp, b, 0o600) != nil || os.Rename(tmp, filepath.Join(c.dir, key+".bpf")) != nil {
		os.Remove(tmp)
		return
	}
	c.mu.Lock()
	c.mem[key] = b
	c.mu.Unlock()
}
