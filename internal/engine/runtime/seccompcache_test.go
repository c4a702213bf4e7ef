package runtime

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"testing"
)

func TestSeccompCache(t *testing.T) {
	dir := t.TempDir()
	rt := &Runtime{Name: "crun", Root: filepath.Join(dir, "state")}
	spec, err := Generate(SpecOpts{ID: "c1", Rootfs: "/", Args: []string{"true"}, NoNewPrivileges: true})
	if err != nil {
		t.Fatal(err)
	}
	c := NewSeccompCache(filepath.Join(dir, "cache"))
	if c.Annotate(rt, spec) {
		t.Fatal("Annotate on an empty cache added a program")
	}
	prog := make([]byte, 16)
	prog[0] = 6 // BPF_RET
	os.MkdirAll(filepath.Join(rt.Root, "c1"), 0o700)
	os.WriteFile(filepath.Join(rt.Root, "c1", "seccomp.bpf"), prog, 0o600)
	c.Learn(rt, "c1", spec)
	// A fresh cache over the same directory finds the program.
	c2 := NewSeccompCache(filepath.Join(dir, "cache"))
	spec2, _ := Generate(SpecOpts{ID: "c2", Rootfs: "/", Args: []string{"sh"}, NoNewPrivileges: true})
	if !c2.Annotate(rt, spec2) {
		t.Fatal("Annotate after Learn: no program for the same profile")
	}
	if got := spec2.Annotations[crunBPFAnnotation]; got != base64.StdEncoding.EncodeToString(prog) {
		t.Errorf("annotation %q, want the learned program", got)
	}
	if spec2.Linux.Seccomp == nil {
		t.Error("the seccomp section must stay for runtimes that ignore the annotation")
	}
	// Another profile (more capabilities) does not reuse it; runc never gets it.
	spec3, _ := Generate(SpecOpts{ID: "c3", Rootfs: "/", Args: []string{"sh"}, CapAdd: []string{"SYS_ADMIN"}})
	if c2.Annotate(rt, spec3) {
		t.Error("a different profile reused the cached program")
	}
	spec4, _ := Generate(SpecOpts{ID: "c4", Rootfs: "/", Args: []string{"sh"}, NoNewPrivileges: true})
	if c2.Annotate(&Runtime{Name: "runc"}, spec4) {
		t.Error("runc got the crun annotation")
	}
	// A malformed program is never used.
	if validBPF(make([]byte, 7)) || validBPF(nil) {
		t.Error("validBPF accepts a malformed program")
	}
}
